"""The stateful processor of the stream (features/stream_processor.py), run by Spark's own TwsTester: each
card's buckets are one MapState value, a micro-batch reads and writes only the cards it touches, and the
aggregates equal features/state.py's on one in-memory state, whatever the layout."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql.streaming.tws_tester import TwsTester

from features.state import EntityState, update
from features.stream_processor import EntityStateProcessor, group_of, pack, settle_hour, unpack
from jobs.errors import FraudError
from jobs.score_stream import StateLayout, table_properties
from tests.test_state import DELAY, transactions


def test_values_round_trip_exactly():
    state = EntityState("card", np.array([3, 3, 9], np.int64), np.array([430_000, 430_005, 1], np.int64),
                        np.array([[1, 12.5, 0, 156.25], [2, 30.01, 1, 450.1], [1, 0.07, 0, 0.0049]]))
    back = unpack("card", [pack(state)])
    assert back.key.tolist() == [3, 3, 9] and back.hour.tolist() == [430_000, 430_005, 1]
    assert np.array_equal(back.sums, state.sums)
    assert len(unpack("card", [])) == 0
    assert group_of(np.array([5, 17]), 0).tolist() == [5, 17] and group_of(np.array([5, 17]), 4).tolist() == [1, 1]


@pytest.mark.parametrize("groups,settle", [(0, False), (1, False), (7, False), (0, True), (7, True)])
def test_processor_equals_one_in_memory_state(groups, settle):
    frame = transactions(days=12)
    tester = TwsTester(EntityStateProcessor("card", DELAY, groups=groups, settle=settle), timeMode="ProcessingTime")
    reference = EntityState.empty("card")
    for start in range(0, len(frame), len(frame) // 9 + 1):  # one grouping key (bucket) holds every card here
        batch = frame.iloc[start:start + len(frame) // 9 + 1]
        out = tester.testInPandas(0, batch.reset_index(drop=True))
        expected, reference = update(reference, batch.reset_index(drop=True), DELAY)
        pd.testing.assert_frame_equal(out[expected.columns].reset_index(drop=True), expected.reset_index(drop=True))
        assert out["transaction_id"].tolist() == batch["transaction_id"].tolist()
    values = tester.peekMapState("buckets", 0)
    settled = tester.peekMapState("settled", 0) if settle else {}
    stored = unpack("card", [v[0] for v in [*values.values(), *settled.values()]])
    assert sorted(zip(stored.key, stored.hour)) == sorted(zip(reference.key, reference.hour))
    expected_keys = set(group_of(np.unique(reference.key), groups).tolist())
    assert {k[0] for k in values} | {k[0] for k in settled} == expected_keys  # groups=0: one key per card
    if settle:  # both in use after 12 days; a key's settled hours all precede its recent ones
        assert settled and all(unpack("card", [settled[k][0]]).hour.max() < unpack("card", [values[k][0]]).hour.min()
                               for k in settled if k in values)


def test_a_batch_touches_only_its_cards_and_drops_what_expired():
    tester = TwsTester(EntityStateProcessor("card", DELAY), timeMode="ProcessingTime")
    def tx(ids, cards, when):
        return pd.DataFrame({"transaction_id": ids, "customer_id": cards, "tx_datetime": pd.to_datetime(when),
                             "tx_amount": 10.0, "tx_fraud": 0})
    tester.testInPandas(0, tx([1, 2], [100, 200], ["2026-01-01 10:00", "2026-01-01 11:00"]))
    before = tester.peekMapState("buckets", 0)
    assert {k[0] for k in before} == {100, 200}
    # 40 days later card 100 pays again: its old hour is past every window (30 days + 1-day delay) and goes;
    # card 200 is not touched, so its value stays as it was (state TTL forgets it in a real query)
    out = tester.testInPandas(0, tx([3], [100], ["2026-02-10 10:00"]))
    assert out["card_tx_count_30d"].tolist() == [1.0]
    after = tester.peekMapState("buckets", 0)
    assert after[(200,)] == before[(200,)]
    assert unpack("card", [after[(100,)][0]]).hour.tolist() == [int(pd.Timestamp("2026-02-10 10:00").value // 3_600_000_000_000)]


def test_bypass_rows_go_through_without_touching_the_state():
    tester = TwsTester(EntityStateProcessor("card", DELAY, bypass="bypass_state"), timeMode="ProcessingTime")
    rows = pd.DataFrame({"transaction_id": [1, 2, 3], "customer_id": [100, None, 100],
                         "tx_datetime": pd.to_datetime(["2026-01-01 10:00", None, "2026-01-01 10:30"]),
                         "tx_amount": [10.0, None, 20.0], "tx_fraud": [0, 1, 0], "bypass_state": [False, True, False],
                         "payload": [None, '{"transaction_id": 2, "tx_fraud": 1}', None]})
    out = tester.testInPandas(0, rows).set_index("transaction_id")
    assert out.loc[2, "payload"] == '{"transaction_id": 2, "tx_fraud": 1}' and np.isnan(out.loc[2, "card_tx_count_30d"])
    assert out.loc[[1, 3], "card_tx_count_30d"].tolist() == [1.0, 2.0]
    assert set(tester.peekMapState("buckets", 0)) == {(100,)}
    only_bypass = tester.testInPandas(0, rows[rows["bypass_state"]])
    assert only_bypass["transaction_id"].tolist() == [2]
    assert set(tester.peekMapState("buckets", 0)) == {(100,)}


class CountingMap(dict):
    """A MapState stand-in that counts writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def getValue(self, key):
        return self.get(key)

    def updateValue(self, key, value):
        self.writes += 1
        self[key] = value

    def removeKey(self, key):
        self.writes += 1
        self.pop(key, None)


def test_a_settled_value_is_rewritten_only_when_the_day_turns():
    processor = EntityStateProcessor("terminal", DELAY, settle=True)
    processor.state, processor.settled = CountingMap(), CountingMap()
    def batch(ids, when):
        return [pd.DataFrame({"transaction_id": ids, "terminal_id": 7, "tx_datetime": pd.to_datetime(when),
                              "tx_amount": 10.0, "tx_fraud": 0})]
    days = pd.date_range("2026-01-01 00:30", periods=5 * 24, freq="h")  # a terminal busy every hour for 5 days
    for i, when in enumerate(days):
        list(processor.handleInputRows((0,), iter(batch([i], [when])), None))
    assert processor.state.writes == len(days)  # the recent value: at every micro-batch
    assert processor.settled.writes == 3  # the settled one: at the start of days 3, 4 and 5
    recent = unpack("terminal", [processor.state[(7,)][0]])
    settled = unpack("terminal", [processor.settled[(7,)][0]])
    assert recent.hour.min() == settle_hour(int(recent.hour.max())) and settled.hour.max() == recent.hour.min() - 1
    assert len(recent) + len(settled) == len(days)
    # a late label of an old hour changes the settled value only
    label = batch([0], [days[0]])[0].assign(tx_fraud=1, label_row=True)
    list(processor.handleInputRows((0,), iter([label]), None))
    assert processor.settled.writes == 4 and processor.state.writes == len(days)
    assert unpack("terminal", [processor.settled[(7,)][0]]).sums[:, 2].sum() == 1


def test_the_state_layout_is_checked(make_cfg):
    layout = StateLayout.from_config(make_cfg(), DELAY)
    assert layout.settle == ("terminal",) and layout.processor("terminal", DELAY).settle
    assert not layout.processor("card", DELAY).settle
    with pytest.raises(FraudError, match=r"stream.state_ttl_days: expected more than .* \(33 days\), found 30"):
        StateLayout.from_config(make_cfg(stream__state_ttl_days=30), DELAY)
    with pytest.raises(FraudError, match=r"stream.state_settle: expected entities among card, terminal, found \['merchant'\]"):
        StateLayout.from_config(make_cfg(stream__state_settle=["merchant"]), DELAY)
    assert StateLayout.from_config(make_cfg(stream__state_ttl_days=None), DELAY).time_mode == "None"


def test_the_delta_checkpoint_interval_is_checked(make_cfg):
    assert table_properties(make_cfg()) == {"delta.checkpointInterval": "100"}
    for wrong in (0, "often", 2.5):
        with pytest.raises(FraudError, match=r"stream.delta_checkpoint_interval: expected a whole number of commits "
                                             rf"of 1 or more, found {wrong!r}"):
            table_properties(make_cfg(stream__delta_checkpoint_interval=wrong))
