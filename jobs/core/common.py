"""What every command shares: the common options, the configuration they select, and clean error exits."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from jobs.core.config import Config, load_config, parse_override
from jobs.core.errors import FraudError

# command-line option -> configuration key it overrides
PATH_OPTIONS = {
    "lake": "paths.lake",
    "checkpoint": "paths.checkpoint",
    "mlflow_uri": "mlflow.tracking_uri",
    "bootstrap_servers": "kafka.bootstrap_servers",
}


def add_common_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add --env, --conf-dir, --set and the path overrides to a parser; return it."""
    g = parser.add_argument_group("configuration")
    g.add_argument("--env", help="configuration layer under conf/ (default: $FRAUD_ENV, else local)")
    g.add_argument("--conf-dir", help="the conf folder (default: $FRAUD_CONF_DIR, else the project's conf/)")
    g.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any configuration key, e.g. --set kafka.partitions=4 (repeatable)",
    )
    g.add_argument("--lake", help="root of the Delta tables (paths.lake): a folder, s3a:// or hdfs:// URI")
    g.add_argument("--checkpoint", help="root of the streaming checkpoints (paths.checkpoint)")
    g.add_argument("--mlflow-uri", help="MLflow tracking URI (mlflow.tracking_uri)")
    g.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (kafka.bootstrap_servers)")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """Load the configuration the common options select."""
    overrides = dict(parse_override(o) for o in args.overrides)
    for option, key in PATH_OPTIONS.items():
        value = getattr(args, option, None)
        if value is not None:
            overrides[key] = value
    return load_config(args.env, overrides, args.conf_dir)


def job_main(
    prog: str,
    doc: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    execute: Callable[[argparse.Namespace], int | None],
) -> Callable[..., int]:
    """Build a job's `main(argv)`: the same options and handler as its `fraud` subcommand, for spark-submit."""

    def main(argv: Sequence[str] | None = None) -> int:
        parser = argparse.ArgumentParser(
            prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        add_arguments(parser)
        return run_main(parser, execute, argv)

    return main


def run_main(
    parser: argparse.ArgumentParser,
    handler: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse argv, call the handler; a FraudError becomes one clear line on stderr and exit code 2."""
    args = parser.parse_args(argv)
    try:
        return int(handler(args) or 0)
    except FraudError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
