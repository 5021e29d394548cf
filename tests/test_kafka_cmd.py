"""`fraud kafka up | status | down` on a broker of its own (free ports, tmp state folder)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jobs.cli import main
from jobs.dev import kafka_broker
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def test_up_status_down(tmp_path, capsys):
    port, controller = free_port(), free_port()
    common = [
        "--set",
        f"kafka.broker.state_dir={tmp_path}/kafka",
        "--set",
        f"kafka.broker.port={port}",
        "--set",
        f"kafka.broker.controller_port={controller}",
    ]
    try:
        assert main(["kafka", "up", *common]) == 0
        first = capsys.readouterr().out
        assert f"broker up on 127.0.0.1:{port}" in first
        pid = int((tmp_path / "kafka/broker.pid").read_text())

        assert main(["kafka", "up", *common]) == 0  # idempotent: same process
        assert f"(pid {pid}," in capsys.readouterr().out

        assert main(["kafka", "status", *common]) == 0
        state = json.loads(capsys.readouterr().out)
        assert state == {
            "running": True,
            "pid": pid,
            "answering": True,
            "bootstrap_servers": f"127.0.0.1:{port}",
            "security_protocol": "PLAINTEXT",
            "topics": ["alerts", "labels", "transactions"],
            "state_dir": f"{tmp_path}/kafka",
        }
    finally:
        assert main(["kafka", "down", *common]) == 0
    assert "broker stopped" in capsys.readouterr().out
    assert main(["kafka", "status", *common]) == 1
    assert json.loads(capsys.readouterr().out)["running"] is False
    assert main(["kafka", "down", *common]) == 0
    assert "no broker" in capsys.readouterr().out


def test_down_leaves_a_foreign_process_alone(tmp_path):
    """A stale pid file that points at some other process must not get it killed."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        spec = kafka_broker.BrokerSpec(state_dir=tmp_path, jars_dir=tmp_path)
        spec.pid_file.write_text(str(other.pid))
        assert kafka_broker.stop(spec) is False
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_up_refuses_a_port_someone_else_holds(tmp_path, broker, capsys):
    args = [
        "kafka",
        "up",
        "--set",
        f"kafka.broker.state_dir={tmp_path}/kafka",
        "--set",
        f"kafka.broker.port={broker.port}",
    ]
    assert main(args) == 2
    assert f"port 127.0.0.1:{broker.port} is taken by another process" in capsys.readouterr().err


def test_every_subcommand_has_help(capsys):
    from jobs.cli import COMMANDS

    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: fraud {name}" in capsys.readouterr().out


def test_cluster_ids_never_start_with_a_dash():
    ids = [kafka_broker.new_cluster_id() for _ in range(2000)]  # about 1 in 64 raw draws starts with '-'
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
