"""The configuration keys the streaming jobs read, checked before the JVM starts."""

from __future__ import annotations

from jobs.core.checks import check_interval, check_whole_number
from jobs.core.config import Config
from jobs.core.errors import ConfigError
from jobs.stream.alert_budget import AlertBudget
from jobs.stream.terminal_checks import TerminalChecks


def check_stream_config(cfg: Config) -> None:
    """The keys `fraud stream` and `fraud ingest` read, checked before the JVM starts."""
    check_interval(cfg, "stream.trigger_interval")
    check_whole_number(cfg, "stream.metrics_port", 0, 65535)
    check_whole_number(cfg, "stream.delta_checkpoint_interval", 1)
    check_whole_number(cfg, "kafka.max_offsets_per_trigger", 1)
    check_whole_number(cfg, "kafka.fetch_max_wait_ms", 0, 60_000)
    AlertBudget.from_config(cfg)
    TerminalChecks.from_config(cfg)
    ttl = cfg.get("stream.state_ttl_days")
    if ttl is not None:
        check_whole_number(cfg, "stream.state_ttl_days", 1)
    offsets = cfg.get("kafka.starting_offsets")
    if not (offsets in ("earliest", "latest") or (isinstance(offsets, str) and offsets.lstrip().startswith("{"))):
        raise ConfigError(
            "kafka.starting_offsets: expected 'earliest', 'latest' or Spark's JSON of offsets per "
            f"partition, found {offsets!r}"
        )
