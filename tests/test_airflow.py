"""The Airflow DAGs of spark-submit/schedules/dags, in Airflow's own environment (.tools/airflow, `make
airflow`): the folder imports with no error, the task graph is the schedule the docs describe, every task
submits a job of this repository with options that job accepts, and the daily DAG runs end to end with
`airflow dags test` against a PostgreSQL metadata database, submitting real Spark jobs on local[2]."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from jobs.simulation.simulate import simulate_to_folder
from jobs.simulation.simulator import make_spec
from tests import servers

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "spark-submit" / "schedules" / "dags"
AIRFLOW_BIN = ROOT / ".tools" / "airflow" / "bin"
SUBMIT_OPTIONS = {"--master", "--deploy-mode", "--image"}
KUBERNETES = {
    "fraud_master": "k8s://https://kubernetes.default.svc",
    "fraud_image": "registry.example/fraud:0.1.0",
    "fraud_raw": "s3a://bank/raw/",
    "fraud_label_delay": "1d",
}


@pytest.fixture(scope="module")
def dags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return probe(tmp_path_factory.mktemp("airflow"), KUBERNETES)


def probe(home: Path, variables: dict[str, str]) -> dict[str, Any]:
    """The DAG folder as Airflow's DagBag sees it (tests/airflow_probe.py), each bash command rendered with
    no Variable set and with `variables`."""
    done = subprocess.run(
        [str(AIRFLOW_BIN / "python"), str(ROOT / "tests/airflow_probe.py"), str(DAGS), json.dumps(variables)],
        capture_output=True,
        text=True,
        timeout=300,
        env=airflow_env(home),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def airflow_env(home: Path, **variables: str) -> dict[str, str]:
    """The environment of an Airflow command: its home, the DAG folder, no examples, and Variables as
    AIRFLOW_VAR_* (what a deployment sets in the web UI or with `airflow variables set`)."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PATH": f"{ROOT / '.venv/bin'}:{os.environ['PATH']}",
    }
    env.update({f"AIRFLOW_VAR_{k.upper()}": v for k, v in variables.items()})
    return servers.short_job_env(env)


def job_invocation(command: str) -> tuple[list[str], str, list[str]]:
    """(submit options, job file, job options) of a task's `cd HOME && spark-submit/submit.sh ...` command."""
    cd, submit = command.split("&&")
    assert shlex.split(cd)[0] == "cd"
    argv = shlex.split(submit)
    assert argv[0] == "spark-submit/submit.sh", argv
    i = 1
    while argv[i] in SUBMIT_OPTIONS:
        i += 2
    return argv[1:i], argv[i], argv[i + 1 :]


def check_job(job: str, args: list[str]) -> argparse.Namespace:
    """The job file exists and its own parser (the one spark-submit runs) accepts the arguments."""
    assert (ROOT / job).is_file(), job
    module = importlib.import_module(job.removesuffix(".py").replace("/", "."))
    parser = argparse.ArgumentParser(prog=job, exit_on_error=False)
    module.add_arguments(parser)
    return parser.parse_args(args)


def test_the_dag_folder_imports_and_schedules_the_batch_jobs(dags):
    assert dags["import_errors"] == {}
    daily, maintenance = dags["dags"]["fraud_daily"], dags["dags"]["fraud_maintenance"]
    assert (daily["schedule"], maintenance["schedule"]) == ("0 2 * * *", "30 4 * * *")
    assert all(d["catchup"] is False and d["max_active_runs"] == 1 for d in (daily, maintenance))
    # a chain: a failed cleaning leaves the features and the training undone
    assert {t: (v["upstream"], v["trigger_rule"]) for t, v in daily["tasks"].items()} == {
        "clean": ([], "all_success"),
        "features": (["clean"], "all_success"),
        "retraining_day": (["features"], "all_success"),
        "train": (["retraining_day"], "all_success"),
    }
    assert list(maintenance["tasks"]) == ["maintain"]
    for task in [*daily["tasks"].values(), *maintenance["tasks"].values()]:
        assert task["retries"] == 2 and task["retry_delay_seconds"] == 900
        assert task["operator"] == "ShortCircuitOperator" or task["timeout_seconds"] >= 3600


def test_every_task_submits_a_job_of_the_repository_with_options_it_accepts(dags):
    commands = {t: v for d in dags["dags"].values() for t, v in d["tasks"].items() if v["command_defaults"]}
    jobs = {}
    for task, rendered in commands.items():
        submit, job, args = job_invocation(rendered["command_defaults"])
        assert submit == ["--master", "yarn", "--deploy-mode", "cluster"], submit
        assert check_job(job, args).env == "cluster"
        jobs[task] = (job, args)
        submit, job, args = job_invocation(rendered["command_with_variables"])
        assert submit == [
            "--master",
            KUBERNETES["fraud_master"],
            "--deploy-mode",
            "cluster",
            "--image",
            KUBERNETES["fraud_image"],
        ], submit
        check_job(job, args)
    assert jobs == {
        "clean": ("jobs/batch/clean.py", ["--env", "cluster", "--input", "s3a://bank-raw/transactions/"]),
        "features": ("jobs/batch/build_features.py", ["--env", "cluster", "--label-delay", "7d"]),
        "train": ("jobs/batch/train.py", ["--env", "cluster", "--latest", "--label-delay", "7d"]),
        "maintain": ("jobs/batch/maintain.py", ["--env", "cluster"]),
    }
    assert job_invocation(commands["train"]["command_with_variables"])[2][-1] == "1d"


def test_a_wrong_option_would_be_caught():
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        check_job("jobs/batch/train.py", ["--env", "cluster", "--latests"])


@pytest.mark.integration
def test_the_daily_dag_cleans_and_builds_features_and_skips_training_off_its_weekday(spark, tmp_path, pg_database):
    import psycopg

    raw, lake = tmp_path / "raw", tmp_path / "lake"
    simulate_to_folder(make_spec("handbook", days=4, customers=100, terminals=200), raw)
    env = airflow_env(
        tmp_path / "airflow",
        fraud_home=str(ROOT),
        fraud_master="local[2]",
        fraud_deploy_mode="client",
        fraud_env="local",
        fraud_raw=str(raw),
        fraud_label_delay="1d",
        fraud_job_options=f"--lake {lake} --set spark.ui_enabled=false",
    )
    # Airflow's metadata database on PostgreSQL, through psycopg 3 for its sync and its async engine alike;
    # the password reaches libpq through PGPASSWORD (set by the fixture)
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = pg_database
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = pg_database.replace("+psycopg", "+psycopg_async")
    env["FRAUD_DAG_RETRIES"] = "0"  # a failure fails the run at once rather than 15 minutes later
    airflow = str(AIRFLOW_BIN / "airflow")
    migrated = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-3000:]
    # 2026-11-24 is a Tuesday: the retraining weekday (Monday) is not today
    run = subprocess.run(
        [airflow, "dags", "test", "fraud_daily", "2026-11-24T02:00:00+00:00"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    with psycopg.connect(pg_database.replace("+psycopg", "")) as connection:
        states = dict(
            connection.execute("SELECT task_id, state FROM task_instance WHERE dag_id = 'fraud_daily'").fetchall()
        )
    assert states == {"clean": "success", "features": "success", "retraining_day": "success", "train": "skipped"}, (
        run.stdout[-4000:] + run.stderr[-4000:]
    )

    expected = json.loads((raw / "_manifest.json").read_text())["expected_cleaning"]["clean"]
    clean = spark.read.format("delta").load(str(lake / "clean_transactions"))
    assert clean.count() == expected
    assert spark.read.format("delta").load(str(lake / "features_transactions")).count() == expected
