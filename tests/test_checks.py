"""Inputs checked before Spark starts: the command fails in seconds, naming the path. (Configuration values
are checked by the schema when the configuration is loaded: tests/test_config.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jobs.core.checks import check_input
from jobs.core.config import load_config
from jobs.core.errors import FraudError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("value", ["0 seconds", "500 milliseconds", "1 minute", "2 hours 30 minutes", "1.5 seconds"])
def test_a_trigger_interval_spark_accepts_passes(value):
    assert load_config("local", {"stream.trigger_interval": value}).get("stream.trigger_interval") == value


@pytest.mark.parametrize("value", ["abc", "10", "1 month", "", "seconds 5"])
def test_a_trigger_interval_spark_refuses_names_the_key_and_the_value(value):
    with pytest.raises(FraudError, match=rf"stream.trigger_interval: expected a duration such as .*, found '{value}'"):
        load_config("local", {"stream.trigger_interval": value})


def test_a_missing_local_input_is_named(tmp_path):
    missing = tmp_path / "no" / "such.txt"
    with pytest.raises(FraudError, match=rf"--input {missing}: expected a raw file or a folder .* found no such file"):
        check_input(str(missing))
    assert check_input(str(tmp_path)) == str(tmp_path)
    assert check_input("s3a://bucket/raw") == "s3a://bucket/raw"  # checked by the job, on its own file system


@pytest.mark.parametrize(
    "argv", [["stream", "--set", "stream.trigger_interval=abc"], ["clean", "--input", "/no/such/file"]]
)
def test_the_commands_fail_before_spark_starts(argv):
    done = subprocess.run(
        [sys.executable, "-m", "jobs.cli", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    # no JVM was started: Spark's first log lines (its log4j profile, the native-hadoop warning) never appear
    assert "Traceback" not in done.stderr and "log4j" not in done.stderr and "WARN" not in done.stderr, done.stderr
    expected = (
        "stream.trigger_interval: expected a duration" if argv[0] == "stream" else "--input /no/such/file: expected"
    )
    assert expected in done.stderr
