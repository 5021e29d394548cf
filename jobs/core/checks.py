"""Checks of inputs that a command makes before Spark starts: a wrong path fails in a second with a message that
names it, instead of a JVM traceback after a minute. (Configuration values: the schema, jobs/core/settings.py.)"""

from __future__ import annotations

from pathlib import Path

from jobs.core.errors import FraudError


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
