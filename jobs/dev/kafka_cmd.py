"""`fraud kafka up | down | status`: the local single-node KRaft broker (see jobs/dev/kafka_broker.py)."""

from __future__ import annotations

import argparse
import json
import sys

from jobs.core.common import add_common_options, config_from_args, job_main
from jobs.dev import kafka_broker


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=["up", "down", "status"],
        help="up: start (idempotent) and create the topics; down: stop the broker `up` started; "
        "status: print its state as JSON (exit 1 if it is not answering)",
    )
    add_common_options(parser)


def execute(args: argparse.Namespace) -> int:
    spec = kafka_broker.spec_from_config(config_from_args(args))
    if args.action == "up":
        pid = kafka_broker.start(spec)
        print(
            f"kafka: broker up on {spec.bootstrap_servers} (pid {pid}, state in {spec.state_dir}); "
            f"topics: {', '.join(spec.topics)}"
        )
        return 0
    if args.action == "down":
        stopped = kafka_broker.stop(spec)
        print("kafka: broker stopped" if stopped else f"kafka: no broker of {spec.state_dir} was running")
        return 0
    state = kafka_broker.status(spec)
    print(json.dumps(state, indent=2))
    return 0 if state["answering"] else 1


main = job_main("fraud kafka", __doc__, add_arguments, execute)


if __name__ == "__main__":
    sys.exit(main())
