"""The schedules in spark-submit/schedules: every scheduled command is a job of the repository with options that
job accepts, the cron expressions are well formed, and the crontab (YARN) and the CronJobs (Kubernetes) schedule
the same jobs at the same times."""
from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEDULES = ROOT / "spark-submit" / "schedules"
CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\d+(-\d+)?))*$")
SUBMIT_OPTIONS = {"--master", "--deploy-mode", "--image"}


def job_invocation(argv: list[str]) -> tuple[str, list[str]]:
    """(job file, its arguments) of a `spark-submit/submit.sh [submit options] JOB.py [job options]` command."""
    assert argv[0] == "spark-submit/submit.sh", argv
    i = 1
    while argv[i] in SUBMIT_OPTIONS:
        i += 2
    return argv[i], argv[i + 1:]


def check_job(job: str, args: list[str]) -> None:
    """The job file exists and its own parser (the one spark-submit runs) accepts the arguments."""
    assert (ROOT / job).is_file(), job
    module = importlib.import_module(job.removesuffix(".py").replace("/", "."))
    parser = argparse.ArgumentParser(prog=job, exit_on_error=False)
    module.add_arguments(parser)
    parsed = parser.parse_args(args)
    assert parsed.env == "cluster", f"{job} must run with --env cluster"


def check_cron(expression: str) -> None:
    fields = expression.split()
    assert len(fields) == 5 and all(CRON_FIELD.match(f) for f in fields), expression


def crontab_jobs() -> dict[str, str]:
    """job file -> cron expression, from the crontab, with its variables expanded."""
    variables: dict[str, str] = {}
    jobs: dict[str, str] = {}
    for line in (SCHEDULES / "crontab").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if re.match(r"^[A-Z_]+=", line):
            name, value = line.split("=", 1)
            variables[name] = value
            continue
        fields = line.split(None, 5)
        check_cron(" ".join(fields[:5]))
        command = re.sub(r"\$([A-Z_]+)", lambda m: variables[m.group(1)], fields[5])
        for part in command.split("&&"):
            argv = shlex.split(part.split(">>")[0])
            if argv[0] in ("cd", "mkdir"):
                continue
            job, args = job_invocation(argv)
            check_job(job, args)
            jobs[job] = " ".join(fields[:5])
    return jobs


def cronjob_jobs() -> dict[str, str]:
    """job file -> cron expression, from the Kubernetes CronJobs, with $(VAR) expanded from the container env."""
    jobs: dict[str, str] = {}
    for doc in yaml.safe_load_all((SCHEDULES / "cronjobs.yaml").read_text()):
        assert (doc["apiVersion"], doc["kind"]) == ("batch/v1", "CronJob")
        spec = doc["spec"]
        check_cron(spec["schedule"])
        assert spec["concurrencyPolicy"] == "Forbid"  # a slow run is never overlapped by the next one
        (container,) = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        argv = [re.sub(r"\$\(([A-Z_]+)\)", lambda m: env[m.group(1)], a) for a in container["command"] + container["args"]]
        job, args = job_invocation(argv)
        check_job(job, args)
        jobs[job] = spec["schedule"]
    return jobs


def test_schedules_run_real_jobs_with_valid_options_and_agree():
    yarn, kubernetes = crontab_jobs(), cronjob_jobs()
    assert yarn == kubernetes
    assert set(yarn) == {"jobs/clean.py", "jobs/maintain.py", "jobs/train.py"}


def test_a_wrong_option_would_be_caught():
    try:
        check_job("jobs/train.py", ["--env", "cluster", "--latests"])
    except (argparse.ArgumentError, SystemExit):
        return
    raise AssertionError("an unknown option passed")
