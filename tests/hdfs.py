"""A real HDFS for the tests: Hadoop's MiniDFSCluster (a NameNode and a DataNode in one JVM, the Hadoop
version of pyspark's jars), from `.jars/hdfs` (`make jars`), on a free port, in a folder of its own."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from jobs.dev.kafka_broker import free_port
from tests import servers


@dataclass
class HdfsCluster:
    folder: Path
    port: int
    process: subprocess.Popen

    @property
    def uri(self) -> str:
        return f"hdfs://localhost:{self.port}"


def start(folder: Path, timeout_s: float = 180) -> HdfsCluster:
    port, written = free_port(), folder / "hdfs-site.xml"
    # it keeps its blocks under the working folder (target/test/data); -writeConfig once it serves
    process = servers.launch(
        [
            "java",
            "-Xmx512m",
            "-cp",
            os.pathsep.join(servers.jars("hdfs")),
            "org.apache.hadoop.mapreduce.MiniHadoopClusterManager",
            "-nomr",
            "-format",
            "-nnport",
            str(port),
            "-nnhttpport",
            "0",
            "-writeConfig",
            str(written),
        ],
        folder,
        "hdfs.log",
    )
    servers.wait_ready(
        process,
        lambda: written.is_file() and written.stat().st_size > 0,
        "MiniDFSCluster",
        folder / "hdfs.log",
        timeout_s,
    )
    return HdfsCluster(folder, port, process)


def stop(cluster: HdfsCluster) -> None:
    servers.stop(cluster.process)
