"""What the tests' Java servers (tests/s3.py: S3Proxy, tests/hdfs.py: MiniDFSCluster) share: their jars from
`make jars`, a process group of their own logging to a file, and a stop that always ends it. Also the
environment of the jobs the tests start as processes of their own (`short_job_env`)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from jobs.core.errors import WaitTimeout
from jobs.core.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


# The jobs the tests start as processes (the Airflow DAG's tasks, spark-submit/submit.sh, `fraud stream
# --env cluster`) each live a minute or two in a JVM of their own, on a machine whose two cores they share
# with the JIT's compiler threads. Their JVM compiles with the JIT's first tier only: the second tier's
# compilations would not pay back within the job (docs/testing.md). The same bytecode runs; production jobs,
# and the tests' own session, keep the JVM's default.
SHORT_JOB_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"


def short_job_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a Spark job started as a process of its own: SPARK_SUBMIT_OPTS (which spark-submit gives the
    driver's JVM) with SHORT_JOB_JVM_OPTIONS added."""
    options = f"{env.get('SPARK_SUBMIT_OPTS', '')} {SHORT_JOB_JVM_OPTIONS}".strip()
    return {**env, "SPARK_SUBMIT_OPTS": options}


def short_cluster_job_env(env: dict[str, str]) -> dict[str, str]:
    """short_job_env for spark-submit/submit.sh on a cluster manager: the driver's JVM (YARN's
    ApplicationMaster container in cluster mode) and the executors' compile with the JIT's first tier too
    (`spark.driver/executor.defaultJavaOptions`, through SPARK_SUBMIT_OPTS_EXTRA)."""
    extra = (
        f"{env.get('SPARK_SUBMIT_OPTS_EXTRA', '')} --conf spark.driver.defaultJavaOptions={SHORT_JOB_JVM_OPTIONS}"
        f" --conf spark.executor.defaultJavaOptions={SHORT_JOB_JVM_OPTIONS}"
    )
    return short_job_env({**env, "SPARK_SUBMIT_OPTS_EXTRA": extra.strip()})


def jars(profile: str) -> list[str]:
    """The jars of one profile of spark-submit/pom.xml, in .jars/<profile>."""
    found = sorted(str(p) for p in (ROOT / ".jars" / profile).glob("*.jar"))
    if not found:
        raise RuntimeError(f"no jars in {ROOT / '.jars' / profile}: run `make jars`")
    return found


def launch(command: list[str], folder: Path, log_name: str) -> subprocess.Popen:
    """Start a server in `folder`, its output in `folder/log_name`, in a process group of its own."""
    with (folder / log_name).open("ab") as log:
        return subprocess.Popen(
            command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )


def stop(process: subprocess.Popen | None, timeout_s: float = 30) -> None:
    """SIGTERM to the server's process group, SIGKILL if it is still there after `timeout_s`."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_ready(process: subprocess.Popen, ready: Callable[[], bool], what: str, log: Path, timeout_s: float) -> None:
    """Wait until `ready()`; if the server exits first, or `timeout_s` passes (then it is stopped), raise an
    error that names its log."""

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: see {log}")
        return ready()

    try:
        wait_until(up, f"{what} to be ready (its log: {log})", timeout_s, 0.3)
    except WaitTimeout:
        stop(process)
        raise
