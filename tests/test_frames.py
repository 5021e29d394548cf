"""The parity helper the stream's tests compare features with (tests/frames.py): a null counts."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tests.frames import assert_features_match

EXPECTED = pd.DataFrame(
    {"transaction_id": [1, 2, 3], "card_tx_count_1d": [1.0, 2.0, math.nan], "terminal_risk_7d": [0.0, 0.5, 0.25]}
)


def test_equal_features_pass_with_nulls_on_both_sides():
    assert_features_match(EXPECTED.copy(), EXPECTED, "transaction_id", ["card_tx_count_1d", "terminal_risk_7d"])


def test_a_null_feature_in_the_stream_output_fails():
    stream = EXPECTED.assign(terminal_risk_7d=[0.0, math.nan, 0.25])
    with pytest.raises(AssertionError, match=r"terminal_risk_7d: 1 rows, e.g. transaction_id 2: nan against 0.5"):
        assert_features_match(stream, EXPECTED, "transaction_id", ["card_tx_count_1d", "terminal_risk_7d"])


def test_a_value_where_null_is_expected_or_a_missing_row_fails():
    with pytest.raises(AssertionError, match=r"card_tx_count_1d: 1 rows, e.g. transaction_id 3: 0.0 against nan"):
        assert_features_match(
            EXPECTED.assign(card_tx_count_1d=[1.0, 2.0, 0.0]), EXPECTED, "transaction_id", ["card_tx_count_1d"]
        )
    with pytest.raises(AssertionError, match=r"1 transaction_ids on one side only"):
        assert_features_match(EXPECTED.iloc[:2], EXPECTED, "transaction_id", ["card_tx_count_1d"])
