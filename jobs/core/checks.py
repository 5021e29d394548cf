"""Checks of configuration values and inputs that a command makes before Spark starts: a wrong value fails in
a second with a message that names the key or path, instead of a JVM traceback after a minute."""

from __future__ import annotations

import re
from pathlib import Path

from jobs.core.config import Config
from jobs.core.errors import ConfigError, FraudError

# what Spark's Trigger.ProcessingTime accepts: one or more "<number> <unit>" pairs (months and years are not
# a fixed length, so Spark refuses them)
_UNITS = r"(?:microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?)"
_INTERVAL = re.compile(rf"^\s*(?:interval\s+)?(?:\d+(?:\.\d+)?\s*{_UNITS}\s*)+$", re.IGNORECASE)


def check_interval(cfg: Config, key: str) -> str:
    """The value of `key` as a trigger interval Spark accepts ("0 seconds", "500 milliseconds", "1 minute"),
    or ConfigError naming the key."""
    value = cfg.get(key)
    if not isinstance(value, str) or not _INTERVAL.match(value):
        raise ConfigError(
            f"{key}: expected a duration such as '0 seconds', '500 milliseconds' or '1 minute', found {value!r}"
        )
    return value


def check_whole_number(cfg: Config, key: str, low: int, high: int | None = None) -> int:
    """The value of `key` as a whole number in [low, high], or ConfigError naming the key."""
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of {low} or more"
        raise ConfigError(f"{key}: expected a whole number {bounds}, found {value!r}")
    return value


def check_input(location: str, option: str = "--input") -> str:
    """A local input (a path, or file://) that must exist; other schemes (s3a://, hdfs://) are checked by the
    job, on their own file system. Returns the location unchanged."""
    if "://" in location and not location.startswith("file://"):
        return location
    path = Path(location.removeprefix("file://"))
    if not path.exists():
        raise FraudError(
            f"{option} {location}: expected a raw file or a folder of raw files (*.txt), found no such "
            f"file or folder (from {Path.cwd()})"
        )
    return location
