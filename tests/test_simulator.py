"""The simulator reproduces the handbook's published statistics and its scenario rules, row by row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jobs.simulation.simulator import (
    AMOUNT_FRAUD_THRESHOLD,
    CARD_FRAUD_DAYS,
    TERMINAL_FRAUD_DAYS,
    SimulationSpec,
    Simulator,
    generate_profiles,
    make_spec,
)


def run(spec: SimulationSpec) -> pd.DataFrame:
    return pd.concat([b.frame for b in Simulator(spec).days()], ignore_index=True)


@pytest.fixture(scope="module")
def handbook() -> pd.DataFrame:
    """The full handbook preset: 183 days, 5,000 cards, 10,000 terminals (about 2 s)."""
    return run(make_spec("handbook"))


def test_profiles_are_the_references_draws():
    """x, y, mean_amount, mean_nb_tx_per_day per customer in that order from numpy seeded 0."""
    p = generate_profiles(make_spec("handbook", customers=3, terminals=2))
    np.random.seed(0)
    for i in range(3):
        x, y = np.random.uniform(0, 100), np.random.uniform(0, 100)
        mean_amount, mean_nb = np.random.uniform(5, 100), np.random.uniform(0, 4)
        assert (p.customer_xy[i].tolist(), p.mean_amount[i], p.std_amount[i], p.mean_nb_tx_per_day[i]) == (
            [x, y],
            mean_amount,
            mean_amount / 2,
            mean_nb,
        )
    np.random.seed(1)
    assert p.terminal_xy.tolist() == [[np.random.uniform(0, 100), np.random.uniform(0, 100)] for _ in range(2)]


def test_handbook_preset_reproduces_the_published_statistics(handbook: pd.DataFrame):
    # published: 1,754,155 transactions (~9,600 a day), 0.84% fraud, scenarios 973 / 9,077 / 4,631 (7/62/31%)
    per_day = len(handbook) / 183
    assert 9_300 <= per_day <= 9_900, per_day
    fraud_rate = handbook.tx_fraud.mean()
    assert 0.0075 <= fraud_rate <= 0.0093, fraud_rate
    shares = handbook[handbook.tx_fraud == 1].tx_fraud_scenario.value_counts(normalize=True)
    for scenario, published in ((1, 0.066), (2, 0.618), (3, 0.315)):
        assert abs(shares[scenario] - published) < 0.04, (scenario, shares[scenario])


def test_transactions_are_numbered_in_time_order(handbook: pd.DataFrame):
    assert (handbook.transaction_id.to_numpy() == np.arange(len(handbook))).all()
    assert (np.diff(handbook.tx_time_seconds.to_numpy()) >= 0).all()
    assert (handbook.tx_time_days == handbook.tx_time_seconds // 86_400).all()
    seconds_of_day = handbook.tx_time_seconds % 86_400
    assert ((seconds_of_day > 0) & (seconds_of_day < 86_400)).all()


def test_customers_only_use_terminals_within_the_radius():
    spec = make_spec("handbook", customers=300, terminals=2_000, days=20)
    p, tx = generate_profiles(spec), run(spec)
    d = np.linalg.norm(p.customer_xy[tx.customer_id] - p.terminal_xy[tx.terminal_id], axis=1)
    assert (d < spec.radius).all()


@pytest.fixture(scope="module")
def handbook_sim() -> tuple[Simulator, pd.DataFrame]:
    sim = Simulator(make_spec("handbook", days=120))
    return sim, pd.concat([b.frame for b in sim.days()], ignore_index=True)


def test_scenario_1_is_every_large_amount(handbook: pd.DataFrame):
    tx = handbook
    assert ((tx.tx_fraud == 1) == (tx.tx_fraud_scenario > 0)).all()
    assert (tx[tx.tx_fraud_scenario == 1].tx_amount > AMOUNT_FRAUD_THRESHOLD).all()
    assert (tx[tx.tx_amount > AMOUNT_FRAUD_THRESHOLD].tx_fraud == 1).all()
    assert (tx[tx.tx_fraud == 0].tx_amount <= AMOUNT_FRAUD_THRESHOLD).all()


def test_scenario_2_is_every_transaction_on_a_compromised_terminal(handbook_sim):
    sim, tx = handbook_sim
    assert len(sim.terminal_log) == 2 * 120
    compromised = np.zeros(len(tx), dtype=bool)
    for day, terminal in sim.terminal_log:
        compromised |= (
            (tx.terminal_id == terminal).to_numpy()
            & (tx.tx_time_days >= day).to_numpy()
            & (tx.tx_time_days < day + TERMINAL_FRAUD_DAYS).to_numpy()
        )
    # on a compromised terminal in its 28 days: fraud, scenario 2 unless scenario 3 overwrote it
    assert (tx.tx_fraud_scenario[compromised].isin([2, 3])).all()
    assert (tx.tx_fraud_scenario[~compromised] != 2).all()


def test_scenario_3_is_a_third_of_each_compromised_cards_window(handbook_sim):
    sim, tx = handbook_sim
    assert len(sim.card_log) == 3 * 120
    cards = [c for _, c, _, _ in sim.card_log]
    for day, card, n, k in sim.card_log:
        window = tx[(tx.customer_id == card) & (tx.tx_time_days >= day) & (tx.tx_time_days < day + CARD_FRAUD_DAYS)]
        assert len(window) == n and k == n // 3
        if cards.count(card) == 1:  # a card compromised once: exactly its k frauds, all in its window
            assert (window.tx_fraud_scenario == 3).sum() == k
            assert (tx[tx.customer_id == card].tx_fraud_scenario == 3).sum() == k
    in_some_window = np.zeros(len(tx), dtype=bool)
    for day, card, _, _ in sim.card_log:
        in_some_window |= (
            (tx.customer_id == card).to_numpy()
            & (tx.tx_time_days >= day).to_numpy()
            & (tx.tx_time_days < day + CARD_FRAUD_DAYS).to_numpy()
        )
    assert (tx.tx_fraud_scenario[~in_some_window] != 3).all()


def test_compromised_card_amounts_are_multiplied_by_five():
    """Same seed with and without card compromises: the same transactions, scenario-3 amounts x 5."""
    sizes = dict(customers=5_000, terminals=200, days=10, terminals_compromised_per_day=0)
    sim = Simulator(SimulationSpec(**sizes, cards_compromised_per_day=1))
    tx = pd.concat([b.frame for b in sim.days()], ignore_index=True)
    clean = run(SimulationSpec(**sizes, cards_compromised_per_day=0))
    assert len({c for _, c, _, _ in sim.card_log}) == 10  # ten different cards: no overlap
    s3 = (tx.tx_fraud_scenario == 3).to_numpy()
    assert s3.sum() == sum(k for *_, k in sim.card_log) > 0
    assert np.allclose(tx.tx_amount[s3], np.round(clean.tx_amount[s3] * 5, 2))
    assert np.array_equal(tx.tx_amount[~s3], clean.tx_amount[~s3])


def test_same_seed_same_output_other_seed_other_output():
    spec = make_spec("handbook", customers=200, terminals=500, days=10)
    pd.testing.assert_frame_equal(run(spec), run(spec))
    assert not run(spec).equals(run(make_spec("handbook", customers=200, terminals=500, days=10, seed=7)))


def test_otus_preset_fraud_share_is_about_six_percent():
    """The bank's course data has ~1,000 terminals, so compromised terminals dominate: ~5.9% fraud once the
    28-day compromise windows have filled (smaller card count, same terminals)."""
    tx = run(make_spec("otus", customers=4_000, days=90))
    steady = tx[tx.tx_time_days >= TERMINAL_FRAUD_DAYS]
    share = steady.tx_fraud.mean()
    assert 0.050 <= share <= 0.068, share
    assert steady[steady.tx_fraud == 1].tx_fraud_scenario.value_counts(normalize=True)[2] > 0.9


@pytest.mark.parametrize("lasting", [TERMINAL_FRAUD_DAYS, 7])
def test_a_fractional_compromise_rate_draws_that_many_terminals_a_day_on_average(lasting):
    """Bank-like traffic per terminal with fewer terminals: 0.25 compromises a day of 125 terminals keeps the
    bank's 0.2% of terminals a day; each drawn terminal's next 28 days (or `terminal_fraud_days`) are scenario
    2, as with whole rates."""
    spec = make_spec(
        "otus",
        customers=300,
        terminals=125,
        radius=14.1,
        days=200,
        terminals_compromised_per_day=0.25,
        terminal_fraud_days=lasting,
    )
    sim = Simulator(spec)
    tx = pd.concat([b.frame for b in sim.days()], ignore_index=True)
    per_day = pd.Series([day for day, _ in sim.terminal_log]).value_counts().reindex(range(200), fill_value=0)
    assert set(per_day) <= {0, 1} and 0.15 <= per_day.mean() <= 0.35, per_day.mean()
    compromised = np.zeros(len(tx), dtype=bool)
    for day, terminal in sim.terminal_log:
        compromised |= (
            (tx.terminal_id == terminal).to_numpy()
            & (tx.tx_time_days >= day).to_numpy()
            & (tx.tx_time_days < day + lasting).to_numpy()
        )
    assert compromised.any() and (tx.tx_fraud_scenario[compromised].isin([2, 3])).all()
    assert (tx.tx_fraud_scenario[~compromised] != 2).all()


def test_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match=r"simulation: customers must be a positive whole number, found 0"):
        make_spec("handbook", customers=0)
    with pytest.raises(ValueError, match=r"simulation: unknown preset 'bank'; expected one of \['handbook', 'otus'\]"):
        make_spec("bank")
    with pytest.raises(
        ValueError, match=r"terminals compromised a day must be between 0 and the terminals \(100\), found -1"
    ):
        make_spec("otus", terminals=100, terminals_compromised_per_day=-1)
    with pytest.raises(ValueError, match=r"a compromise lasts a positive whole number of days, found 0"):
        make_spec("otus", terminal_fraud_days=0)
