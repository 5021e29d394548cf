"""The stream's drain rate on YARN against local[2], in one run: what the cluster path costs on one machine.

    .venv/bin/python benchmarks/cluster_drain.py [--transactions 100000] [--max-offsets 10000]

A broker of its own (free ports), the tests' small registered model (tests/test_stream_restart.py's
register_model: five trees), and `--transactions` simulated payments (the `handbook` shape, without their
labels) produced to the topic before either job starts. Then `fraud stream` submitted by
spark-submit/submit.sh twice, each on fresh tables and checkpoint, reading the topic from its start in
micro-batches of `--max-offsets` (kafka.max_offsets_per_trigger):
1. `--master local[2]`: the driver and both executor threads in one JVM, the project's default (run before
   and after YARN);
2. `--master yarn --deploy-mode cluster` on Hadoop's MiniYARNCluster (tests/yarn.py), as the YARN test submits
   it: the driver in the ApplicationMaster's container, two executors of one core and 1 GiB, every JVM with
   Spark's default JIT (a long-running stream's).
Both run on this machine's two cores. A run's drain rate is read from its `scores` table's Delta log: the
payments committed after its first micro-batch, over the time from the first micro-batch's commit to the
last's. Start-up (JVMs, containers, the first plan, the first micro-batch's Python workers) is left out.
local[2] runs again after YARN (`local_again`): `yarn_to_local` is YARN's rate over the mean of the two local
ones, and the two local rates say how much the machine's load drifted meanwhile. Prints JSON and keeps
benchmarks/results/cluster_drain.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import delta_commits, own_broker_overrides, report  # noqa: E402
from jobs.core.config import Config, load_config  # noqa: E402
from jobs.dev import kafka_broker, kafka_topics  # noqa: E402
from jobs.kafka_tools.produce import produce, simulated_lines, without_labels  # noqa: E402
from jobs.simulation.simulator import make_spec  # noqa: E402
from tests import yarn  # noqa: E402
from tests.test_standalone import SPARK_HOME, job_settings  # noqa: E402
from tests.test_stream_restart import register_model  # noqa: E402
from tests.test_yarn import yarn_env  # noqa: E402


def drain_rate(cfg: Config) -> dict[str, Any]:
    """The drain rate of a finished run, from `scores`' commits (its first micro-batch left out)."""
    scored = [c for c in delta_commits(Path(cfg.table_path("scores"))) if c["rows"]]
    alerts = sum(c["rows"] for c in delta_commits(Path(cfg.table_path("alerts"))))
    rows = sum(c["rows"] for c in scored)
    after_first = rows - scored[0]["rows"]
    seconds = (scored[-1]["ms"] - scored[0]["ms"]) / 1000
    return {
        "scored": rows,
        "micro_batches": len(scored),
        "measured_payments": after_first,
        "measured_seconds": round(seconds, 2),
        "tx_per_second": round(after_first / seconds) if seconds > 0 else None,
        "seconds_per_micro_batch": round(seconds / (len(scored) - 1), 2) if len(scored) > 1 else None,
        "flagged_share": round(alerts / rows, 4) if rows else None,
    }


def run_stream(master: list[str], cfg: Config, env: dict[str, str], expected: int, log: Path, limit_s: float) -> float:
    """Submit the stream, wait until `expected` payments are in `scores` or `dead_letters`, stop it; return
    the seconds from the submit to the last of them."""
    settings = [
        *job_settings(cfg),
        "--set",
        f"kafka.max_offsets_per_trigger={cfg.get('kafka.max_offsets_per_trigger')}",
    ]
    started = time.monotonic()
    job = subprocess.Popen(
        [str(ROOT / "spark-submit/submit.sh"), *master, "jobs/stream/score_stream.py", "--env", "local", *settings],
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        while True:
            done = sum(c["rows"] for t in ("scores", "dead_letters") for c in delta_commits(Path(cfg.table_path(t))))
            if done >= expected:
                return round(time.monotonic() - started, 1)
            if job.poll() is not None:
                raise RuntimeError(
                    f"the stream ended ({job.returncode}) with {done} of {expected}:\n{log.read_text()[-3000:]}"
                )
            if time.monotonic() - started > limit_s:
                raise RuntimeError(f"{done} of {expected} payments in the tables after {limit_s:.0f} s; see {log}")
            time.sleep(1)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGTERM)
            try:
                job.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(job.pid, signal.SIGKILL)
                job.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--max-offsets", type=int, default=10_000, help="kafka.max_offsets_per_trigger")
    parser.add_argument("--limit-seconds", type=float, default=1800, help="the longest a run may take")
    parser.add_argument(
        "--beside", metavar="TEXT", help="what else ran on the machine meanwhile, kept in the result (default: nothing)"
    )
    parser.add_argument("--name", default="cluster_drain")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cluster-drain-"))
    base = {**own_broker_overrides(work), "kafka.max_offsets_per_trigger": args.max_offsets}
    cfg = load_config("local", base)
    spec = kafka_broker.spec_from_config(cfg)
    kafka_broker.start(spec)
    cluster = None
    try:
        kafka_topics.create_topics(spec.bootstrap_servers, [str(t) for t in cfg.get("kafka.topics").values()], 2)
        register_model(str(cfg.get("mlflow.tracking_uri")), work / "artifacts")
        days = args.transactions // 9_000 + 2  # the handbook's 5,000 cards pay about 9,600 times a day
        lines = without_labels(simulated_lines(make_spec("handbook", days=days)))
        sent = produce(cfg, lines, limit=args.transactions)
        print(f"cluster_drain: {sent}", file=sys.stderr, flush=True)
        runs: dict[str, Any] = {}
        local_env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "PYSPARK_PYTHON": str(ROOT / ".venv/bin/python")}
        local, on_yarn = ["--master", "local[2]"], ["--master", "yarn", "--deploy-mode", "cluster"]
        # local[2] before and after YARN: a machine whose load drifts shows as two different local rates
        for mode, master in (("local", local), ("yarn", on_yarn), ("local_again", local)):
            mode_cfg = load_config(
                "local", {**base, "paths.lake": str(work / mode / "lake"), "paths.checkpoint": str(work / mode / "ck")}
            )
            env = local_env
            if mode == "yarn":
                cluster = yarn.start(work / "yarn")
                env = yarn_env(cluster)
            elif cluster is not None:  # YARN's daemons stop before local[2] runs again
                yarn.stop(cluster)
                cluster = None
            wall = run_stream(master, mode_cfg, env, args.transactions, work / f"{mode}.log", args.limit_seconds)
            runs[mode] = {**drain_rate(mode_cfg), "submit_to_drained_seconds": wall}
            print(f"cluster_drain: {mode}: {runs[mode]}", file=sys.stderr, flush=True)
        result = {
            "benchmark": "cluster_drain",
            "machine": "2 cores, 24 GiB; the broker, YARN's daemons and every JVM on this machine",
            "beside": args.beside,
            "command": "python benchmarks/cluster_drain.py "
            f"--transactions {args.transactions} --max-offsets {args.max_offsets}",
            "transactions": args.transactions,
            "max_offsets_per_trigger": args.max_offsets,
            "model": "tests/test_stream_restart.py register_model (5 trees)",
            "yarn": "cluster deploy mode, 2 executors of 1 core and 1 GiB, driver 1 GiB",
            "local": "local[2]",
            "runs": runs,
            "yarn_to_local": round(
                runs["yarn"]["tx_per_second"] / np.mean([runs[m]["tx_per_second"] for m in ("local", "local_again")]), 3
            ),
        }
        report(result, args.name, not args.no_save)
    finally:
        if cluster is not None:
            yarn.stop(cluster)
        kafka_broker.stop(spec)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
