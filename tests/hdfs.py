"""A real HDFS for the tests: Hadoop's MiniDFSCluster (a NameNode and a DataNode in one JVM, the Hadoop
version of pyspark's jars), from `.jars/hdfs` (`make jars`), on a free port, in a folder of its own."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from jobs.kafka_broker import free_port

ROOT = Path(__file__).resolve().parent.parent
JARS = ROOT / ".jars" / "hdfs"


@dataclass
class HdfsCluster:
    folder: Path
    port: int
    process: subprocess.Popen

    @property
    def uri(self) -> str:
        return f"hdfs://localhost:{self.port}"


def start(folder: Path, timeout_s: float = 180) -> HdfsCluster:
    jars = sorted(JARS.glob("*.jar"))
    if not jars:
        raise RuntimeError(f"no MiniDFSCluster jars in {JARS}: run `make jars`")
    port, written = free_port(), folder / "hdfs-site.xml"
    log = (folder / "hdfs.log").open("ab")
    # it keeps its blocks under the working folder (target/test/data); -writeConfig once it serves
    process = subprocess.Popen(
        ["java", "-Xmx512m", "-cp", os.pathsep.join(map(str, jars)), "org.apache.hadoop.mapreduce.MiniHadoopClusterManager",
         "-nomr", "-format", "-nnport", str(port), "-nnhttpport", "0", "-writeConfig", str(written)],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    cluster = HdfsCluster(folder, port, process)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"MiniDFSCluster exited with {process.returncode}: see {folder / 'hdfs.log'}")
        if written.is_file() and written.stat().st_size:
            return cluster
        time.sleep(0.5)
    stop(cluster)
    raise RuntimeError(f"MiniDFSCluster did not start within {timeout_s:.0f} s: see {folder / 'hdfs.log'}")


def stop(cluster: HdfsCluster) -> None:
    if cluster.process.poll() is None:
        os.killpg(cluster.process.pid, signal.SIGTERM)
        try:
            cluster.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.process.pid, signal.SIGKILL)
            cluster.process.wait()
