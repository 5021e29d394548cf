"""One way to wait for a condition, for the commands and the tests alike: poll it, and fail with what was
waited for when it does not come in time, instead of going on as if it had."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from jobs.core.errors import FraudError, WaitTimeout


def wait_until(
    condition: Callable[[], Any], what: str, seconds: float, interval: float = 1.0, query: Any = None
) -> Any:
    """Poll `condition` every `interval` seconds until it returns something true, and return that.

    Args:
        condition: what to check; called at once, then after each interval.
        what: the awaited thing in words, for the error ("the 2,000 messages scored or dead-lettered").
        seconds: how long to wait at most.
        interval: seconds between two checks.
        query: a streaming query that must stay active meanwhile (its death ends the wait at once).

    Raises:
        WaitTimeout: `condition` was still false after `seconds`.
        FraudError: `query` stopped meanwhile (with its exception).

    Example:
        >>> wait_until(lambda: 1 + 1 == 2, "arithmetic", seconds=1)
        True
    """
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        if query is not None and not query.isActive:
            raise FraudError(f"the streaming query stopped while waiting for {what}: {query.exception()}")
        if time.monotonic() > deadline:
            raise WaitTimeout(f"waited {seconds:g} s for {what}; it did not happen")
        time.sleep(interval)
