"""jobs/core/waiting.py: a wait returns what it waited for, or fails saying what that was."""

from __future__ import annotations

import pytest

from jobs.core.errors import FraudError, WaitTimeout
from jobs.core.waiting import wait_until


class StoppedQuery:
    isActive = False

    def exception(self) -> str:
        return "DeltaIOException: no scores table"


def test_a_wait_returns_the_condition_s_value_once_true():
    calls = iter([0, 0, 3])
    assert wait_until(lambda: next(calls), "three rows", seconds=5, interval=0.01) == 3


def test_a_wait_that_times_out_says_what_it_waited_for():
    with pytest.raises(WaitTimeout, match=r"^waited 0.05 s for the 10 messages scored; it did not happen$"):
        wait_until(lambda: False, "the 10 messages scored", seconds=0.05, interval=0.01)


def test_a_wait_on_a_query_that_stopped_ends_at_once_with_its_error():
    with pytest.raises(FraudError, match=r"stopped while waiting for 10 rows: DeltaIOException: no scores table"):
        wait_until(lambda: False, "10 rows", seconds=60, query=StoppedQuery())
