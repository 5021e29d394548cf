"""The batch jobs around the stream, scheduled by Airflow: two DAGs whose tasks submit the project's jobs
with spark-submit/submit.sh (the same jars, packages and conf archive as a hand-made submission).

    fraud_daily        02:00 every day   clean -> features -> retraining_day? -> train
    fraud_maintenance  04:30 every day   maintain

- clean: `fraud clean` of the raw files delivered since the last run (it skips files it already took).
- features: the training features, extended to the newest cleaned day.
- retraining_day: lets `train` run on the retraining weekday only (Monday unless set), skips it otherwise.
- train: `fraud train --latest`; the new model version becomes `champion` only if it beats the champion on
  the same test days, and the running stream switches to it between micro-batches.
- maintain: `fraud maintain`, compaction then vacuum of every table.
A task runs only when the one before it succeeded: a failed cleaning leaves the features and the training
of that day undone (upstream_failed). Each task retries twice (FRAUD_DAG_RETRIES in the environment of the
DAG processor sets another number), 15 minutes apart, and has a time limit.

Where and how it submits comes from Airflow Variables (the web UI, `airflow variables set`, or environment
variables AIRFLOW_VAR_<NAME>), read when a task runs, not when the file is parsed:
    fraud_home         the checkout with .jars built (make setup)          default /opt/fraud
    fraud_master       spark-submit's master: yarn, k8s://https://..., local[2]   default yarn
    fraud_deploy_mode  cluster or client                                   default cluster
    fraud_image        the image of Spark's pods (Kubernetes only)          default none
    fraud_env          the configuration layer under conf/                  default cluster
    fraud_raw          where the bank delivers its raw files               default s3a://bank-raw/transactions/
    fraud_label_delay  the label delay the features and the model use      default 7d
    fraud_retrain_weekday  0 = Monday ... 6 = Sunday                        default 0
    fraud_job_options  options added to every job (e.g. --lake ... --set key=value)   default none
Secrets (S3 keys, PGPASSWORD, Kafka passwords) reach the jobs as environment variables of the worker.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG


def var(name: str, default: str) -> str:
    """A Jinja reference to an Airflow Variable, rendered when the task runs."""
    return "{{ var.value.get('" + name + "', '" + default + "') }}"


def submit(job: str, options: str = "") -> str:
    """The bash command of a task: spark-submit/submit.sh with the job and its options."""
    image = "{% if var.value.get('fraud_image', '') %} --image {{ var.value.fraud_image }}{% endif %}"
    return (
        f"cd {var('fraud_home', '/opt/fraud')} && spark-submit/submit.sh --master {var('fraud_master', 'yarn')}"
        f" --deploy-mode {var('fraud_deploy_mode', 'cluster')}{image} {job} --env {var('fraud_env', 'cluster')}"
        f" {options} {var('fraud_job_options', '')}"
    ).replace("  ", " ")


def is_retraining_day(logical_date: dt.datetime | None = None, dag_run: Any = None, **_: Any) -> bool:
    """Whether the run's day is the retraining weekday (fraud_retrain_weekday, 0 = Monday)."""
    from airflow.sdk import Variable

    day = logical_date or dag_run.run_after
    return day.weekday() == int(Variable.get("fraud_retrain_weekday", default="0"))


DEFAULTS = {
    "owner": "fraud",
    "retries": int(os.environ.get("FRAUD_DAG_RETRIES", "2")),
    "retry_delay": dt.timedelta(minutes=15),
}
LABEL_DELAY = var("fraud_label_delay", "7d")

with DAG(
    "fraud_daily",
    schedule="0 2 * * *",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["fraud"],
    doc_md="Clean the day's raw files, extend the features, retrain on the retraining weekday.",
) as daily:
    clean = BashOperator(
        task_id="clean",
        bash_command=submit("jobs/batch/clean.py", f"--input {var('fraud_raw', 's3a://bank-raw/transactions/')}"),
        execution_timeout=dt.timedelta(hours=3),
    )
    features = BashOperator(
        task_id="features",
        bash_command=submit("jobs/batch/build_features.py", f"--label-delay {LABEL_DELAY}"),
        execution_timeout=dt.timedelta(hours=3),
    )
    retraining_day = ShortCircuitOperator(task_id="retraining_day", python_callable=is_retraining_day)
    train = BashOperator(
        task_id="train",
        bash_command=submit("jobs/batch/train.py", f"--latest --label-delay {LABEL_DELAY}"),
        execution_timeout=dt.timedelta(hours=6),
    )
    clean >> features >> retraining_day >> train

with DAG(
    "fraud_maintenance",
    schedule="30 4 * * *",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULTS,
    tags=["fraud"],
    doc_md="Compact the stream's small files and vacuum what the tables' retention allows.",
) as maintenance:
    BashOperator(
        task_id="maintain", bash_command=submit("jobs/batch/maintain.py"), execution_timeout=dt.timedelta(hours=3)
    )
