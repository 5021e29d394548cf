"""The streaming job's settings are checked when it starts, with errors that name the key."""

from __future__ import annotations

import pytest

from jobs.core.errors import FraudError
from jobs.stream.batch_writer import table_properties
from jobs.stream.score_stream import state_ttl_days

DELAY = 24


def test_the_state_ttl_is_checked(make_cfg):
    assert state_ttl_days(make_cfg(), DELAY) == 45
    assert state_ttl_days(make_cfg(stream__state_ttl_days=None), DELAY) is None
    with pytest.raises(FraudError, match=r"stream.state_ttl_days: expected more than .* \(33 days\), found 30"):
        state_ttl_days(make_cfg(stream__state_ttl_days=30), DELAY)
    for wrong in ("long", 45.5):  # the schema's part, when the configuration is loaded
        with pytest.raises(FraudError, match=r"stream.state_ttl_days: expected a whole number of days .*, or null"):
            make_cfg(stream__state_ttl_days=wrong)


def test_the_delta_checkpoint_interval_is_checked(make_cfg):
    assert table_properties(make_cfg()) == {"delta.checkpointInterval": "100"}
    for wrong in (0, "often", 2.5):
        with pytest.raises(
            FraudError,
            match=r"stream.delta_checkpoint_interval: expected a whole number of commits "
            rf"of 1 or more, found {wrong!r}",
        ):
            make_cfg(stream__delta_checkpoint_interval=wrong)
