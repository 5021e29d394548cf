"""`fraud desk`: the fraud team's web page (docs/desk.md), on `desk.host`:`desk.port` (127.0.0.1:8050).

    FRAUD_DESK_SECRET=... fraud desk [--host 127.0.0.1] [--port 8050]

- the queue: open alerts and terminal cases from the alerts topic, with why each was flagged; a decision
  (fraud or genuine) goes to the labels topic as `fraud label` sends it, with who decided and when, and the
  stream records both in `labels`;
- the requirement: recall and FPR by day from `scores` and `labels` against the bank's 98% and 5%;
- the stream's health, from its Prometheus endpoint.
The login asks for a name and the shared secret of the environment variable `desk.login_variable` names.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from jobs.core.common import add_common_options, config_from_args, job_main
from jobs.core.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="the address to bind (default desk.host, 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, help="the port (default desk.port, 8050)")
    add_common_options(parser)


def build(cfg: Config, spark: Any = None) -> tuple[Any, Any]:
    """The desk's application and its started alert book; `spark`: a session to share (one of the desk's own
    otherwise, started at the first visit of the requirement page)."""
    from jobs.desk.access import Access, secret_from_environment
    from jobs.desk.app import make_app
    from jobs.desk.book import AlertBook
    from jobs.desk.health import metrics_url
    from jobs.desk.requirement import RequirementPage

    access = Access(secret_from_environment(cfg), float(cfg.get("desk.session_hours")))
    book = AlertBook(cfg).start()

    def session() -> Any:
        if spark is not None:
            return spark
        from jobs.core.session import get_spark

        return get_spark(cfg, "fraud desk")

    page = RequirementPage(cfg, session, float(cfg.get("desk.refresh_seconds")), cfg.get("desk.requirement_days"))
    charts = chart_source(cfg, book)
    return make_app(book, access, page, metrics_url(cfg), int(cfg.get("desk.queue_limit")), charts), book


def chart_source(cfg: Config, book: Any) -> Callable[[], tuple[list[str], str]]:
    """The stream page's charts: from `desk.prometheus_url` when it is set, else from a Sampler of the stream's
    endpoint, which stops with `book`."""
    from jobs.desk.charts import Sampler, charts_html, prometheus_series
    from jobs.desk.health import metrics_url

    hours = float(cfg.get("desk.chart_hours"))
    prometheus = cfg.get("desk.prometheus_url")
    if prometheus:

        def from_prometheus() -> tuple[list[str], str]:
            try:
                return charts_html(prometheus_series(str(prometheus), hours)), f"Prometheus at {prometheus}"
            except (OSError, ValueError, KeyError) as error:
                return [], f"Prometheus at {prometheus} did not answer ({type(error).__name__}: {error})"

        return from_prometheus
    every = float(cfg.get("desk.chart_sample_seconds"))
    sampler = Sampler(metrics_url(cfg), hours, every).start()
    book.on_stop(sampler.stop)
    return lambda: (
        charts_html(sampler.series()),
        f"the stream's endpoint {sampler.url}, read every {every:g} s since the desk started "
        "(desk.prometheus_url: from Prometheus instead)",
    )


def execute(args: argparse.Namespace) -> int:
    from jobs.desk.app import serve

    cfg = config_from_args(args)
    host, port = args.host or str(cfg.get("desk.host")), args.port or int(cfg.get("desk.port"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    app, book = build(cfg)
    print(
        f"desk: http://{host}:{port}/ (log in with a name and the secret of ${cfg.get('desk.login_variable')})",
        flush=True,
    )
    try:
        serve(app, host, port)
    finally:
        book.stop()
    return 0


main = job_main("fraud desk", __doc__, add_arguments, execute)


if __name__ == "__main__":
    sys.exit(main())
