"""A real YARN for the tests: Hadoop's MiniYARNCluster (a ResourceManager and a NodeManager in one JVM, the
Hadoop of pyspark's jars) from `.jars/hdfs` (`make jars`), started by tests/MiniYarn.java on this machine.
spark-submit reaches it through `conf_dir` (HADOOP_CONF_DIR); its containers run in `folder`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests import servers

LAUNCHER = Path(__file__).with_name("MiniYarn.java")


@dataclass
class YarnCluster:
    folder: Path
    process: subprocess.Popen

    @property
    def conf_dir(self) -> Path:
        return self.folder / "conf"


def start(folder: Path, memory_mb: int = 6144, timeout_s: float = 180) -> YarnCluster:
    conf = folder / "conf"
    conf.mkdir(parents=True)
    written = conf / "yarn-site.xml"
    process = servers.launch(
        ["java", "-Xmx768m", "-cp", os.pathsep.join(servers.jars("hdfs")), str(LAUNCHER), str(written), str(memory_mb)],
        folder,
        "yarn.log",
    )
    servers.wait_ready(process, written.is_file, "MiniYARNCluster", folder / "yarn.log", timeout_s)
    return YarnCluster(folder, process)


def stop(cluster: YarnCluster) -> None:
    """Stop the cluster, then every process still running in one of its containers: a NodeManager that
    stops leaves its containers' processes (a driver, executors) behind, each in a session of its own."""
    servers.stop(cluster.process)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            except OSError:
                continue
            if cwd.is_relative_to(cluster.folder):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
