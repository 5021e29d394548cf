"""A real Prometheus server for the tests (the binaries `make setup` unpacks from Debian's package into
.tools/prometheus), and the dashboard's queries."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jobs.core.waiting import wait_until
from tests.servers import wait_ready

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "conf" / "prometheus" / "fraud-rules.yml"
DASHBOARD = ROOT / "conf" / "grafana" / "fraud-stream.json"
SCRAPE_JOB = "fraud-stream"
# Grafana's own variables, as Prometheus is asked when the dashboard's range is the last hour
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s"}


def tool(name: str) -> str:
    """The path of `prometheus` or `promtool`: .tools/prometheus first, else PATH."""
    unpacked = ROOT / ".tools" / "prometheus" / "usr" / "bin" / name
    found = str(unpacked) if unpacked.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(
            f"{name} not found in {unpacked.parent} nor on PATH: run `make setup`, which unpacks "
            "Debian's prometheus package there"
        )
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the Grafana dashboard, Grafana's variables replaced."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    out = []
    for panel in panels:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            out.append((panel["title"], expr))
    return out


def metric_names(expr: str) -> set[str]:
    """The fraud_* metric names an expression reads (recording rules, named fraud:..., excluded)."""
    return set(re.findall(r"\bfraud_[a-z_]+\b", expr))


class Prometheus:
    """A running server's HTTP API."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        query = "?" + urllib.parse.urlencode(params) if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of `expr` (an error answer fails the call)."""
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return list(data["result"])

    def ready(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.url}/-/ready", timeout=2).read()
            return True
        except OSError:
            return False

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll `expr` until it returns a sample (WaitTimeout naming it if none comes)."""
        return wait_until(lambda: self.query(expr), f"Prometheus to return a sample of {expr}", timeout, 0.5)


@contextmanager
def prometheus(work: Path, port: int, targets: list[str], rules: Path = RULES) -> Iterator[Prometheus]:
    """Run Prometheus on 127.0.0.1:`port`, scraping `targets` every second as job fraud-stream, with `rules`."""
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(rules, work / rules.name)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [rules.name],
        "scrape_configs": [{"job_name": SCRAPE_JOB, "static_configs": [{"targets": targets}]}],
    }
    (work / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    log = (work / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(port)
    try:
        wait_ready(process, server.ready, "prometheus", work / "prometheus.log", 30)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
