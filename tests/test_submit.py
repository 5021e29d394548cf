"""spark-submit/submit.sh's arguments for Kubernetes, read from a stand-in for spark-submit (this machine has no
container engine and no Kubernetes: nothing here builds an image or starts a pod; docs/operations.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def submit(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """submit.sh run with `argv`, spark-submit replaced by a script that prints its arguments as JSON."""
    stand_in = tmp_path / "spark-submit"
    stand_in.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    stand_in.chmod(0o755)
    env = {**os.environ, "SPARK_SUBMIT": str(stand_in)}
    return subprocess.run(
        [str(ROOT / "spark-submit/submit.sh"), *argv], env=env, capture_output=True, text=True, timeout=120
    )


def option(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == name]


def test_kubernetes_cluster_mode_gets_the_image_the_conf_archive_and_the_packages(tmp_path):
    done = submit(
        tmp_path,
        "--master",
        "k8s://https://api.bank:6443",
        "--deploy-mode",
        "cluster",
        "--image",
        "registry.bank/fraud:0.1.0",
        "jobs/stream/score_stream.py",
        "--env",
        "cluster",
    )
    assert done.returncode == 0, done.stderr
    args = json.loads(done.stdout)
    assert option(args, "--master") == ["k8s://https://api.bank:6443"]
    assert option(args, "--deploy-mode") == ["cluster"]
    confs = option(args, "--conf")
    assert "spark.kubernetes.container.image=registry.bank/fraud:0.1.0" in confs
    # the driver's pod and the executors find conf/ in the archive spark-submit unpacks as confpkg
    assert "spark.kubernetes.driverEnv.FRAUD_CONF_DIR=confpkg/conf" in confs
    assert "spark.executorEnv.FRAUD_CONF_DIR=confpkg/conf" in confs
    assert any(c.startswith("spark.driver.extraJavaOptions=-Xss64m") for c in confs)
    [archive] = option(args, "--archives")
    assert archive.endswith("conf.zip#confpkg")
    assert "conf/base/stream.yaml" in zipfile.ZipFile(archive.split("#")[0]).namelist()
    [packages] = option(args, "--py-files")
    names = zipfile.ZipFile(packages).namelist()
    assert "jobs/stream/score_stream.py" in names and "features/definitions.py" in names
    assert not any(n.startswith("jobs/dev/") or "__pycache__" in n for n in names)  # the local broker stays home
    [jars] = option(args, "--jars")
    assert any(j.endswith(".jar") and "/.jars/operators/" in j for j in jars.split(","))
    assert args[-3:] == [str(ROOT / "jobs/stream/score_stream.py"), "--env", "cluster"]


def test_kubernetes_without_an_image_is_refused_before_spark_submit(tmp_path):
    done = submit(tmp_path, "--master", "k8s://https://api.bank:6443", "jobs/stream/score_stream.py")
    assert done.returncode == 2
    assert "Kubernetes needs --image" in done.stderr and done.stdout == ""
