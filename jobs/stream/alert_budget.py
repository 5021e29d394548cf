"""The alert threshold that spends the bank's budget of flagged legitimate transactions
(`stream.alert_budget`), kept by `fraud stream`'s driver between micro-batches.

The bank accepts to flag at most 5% of its legitimate transactions (models/metrics.MAX_FPR). The model's
threshold keeps that on its validation days; live, the share it flags drifts with the traffic and the
frauds of the day, and a threshold that flags fewer than the budget leaves recall unspent. So the stream
keeps the last `window_hours` of event time: every scored transaction's score and decision, and the labels
it read. Of those transactions, the ones not confirmed as fraud count as legitimate: a flagged one in full
until its review, one the stream did not flag and nobody reviewed at 1 - its score with `unflagged_at_score`
(the frauds a threshold missed would otherwise hold the next thresholds among them). A card's payments after one
of its frauds was confirmed count for neither: the bank blocks such a card, so its payments are not the
legitimate traffic the budget is about (`fraud backtest` leaves them out of its figures the same way).
For each micro-batch, once its scores are known and before anything of it is flagged:
- the threshold becomes the lowest that flags at most `fpr` of the window's legitimate transactions scored by
  the model now in use (models/threshold.py's budget_threshold), less the share flagged for another reason
  (jobs/stream/terminal_checks.py), and at least half of `fpr`. While the window holds fewer of them than
  `evidence_transactions` (at a start, after a retraining), the micro-batch's own scores count with them, so
  the budget holds from a stream's first micro-batch, at a few payments a day as at hundreds a second: with
  few transactions it flags fewer (the whole part of `fpr` times their number), never more.
  Scores of two models are not on one scale: after a retraining the new model's scores alone choose its
  threshold. With `rescore_window`, a model with too few of them in the window first scores the window's
  transactions again (`rescore`; with an empty window, the transactions before the stream's first are added
  as evidence, `add_evidence`): its threshold then comes from a whole window whose alerts were reviewed, not
  from its first hours, whose frauds nobody has confirmed yet (jobs/stream/budget_evidence.py);
- the budget spent is the share of the window's legitimate transactions that were flagged, at the thresholds
  then in force: the live false-positive rate as the bank's reviews measure it.
With `pending_at_precision`, an alert the fraud team has not reviewed yet counts as legitimate only at the
share of the window's reviewed alerts they found genuine (about half of the alerts are frauds: counting a
waiting one in full spends the budget on frauds), in the share spent and in the threshold's choice.
The window lives in the driver's memory; a restart fills it again from `scores` and
`labels`. The cards blocked are remembered for `stream.blocked_card_days` of event time after their block
(a restart finds those of the frauds confirmed in that time in `labels`, blocked from then on): a stream
that runs for months holds the cards of its last weeks, not every card it ever saw blocked. Off
(`enabled: false`): the model's threshold, as trained.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from jobs.core.config import Config
from jobs.core.lake import table_exists
from jobs.stream.blocked_cards import BlockedCards
from jobs.stream.label_records import last_labels
from models.blocking import after_block
from models.threshold import budget_threshold


@dataclasses.dataclass
class AlertBudget:
    """The recent window of scored transactions and the threshold that spends the budget on it."""

    enabled: bool
    fpr: float
    window: dt.timedelta
    # an alert not reviewed yet counts as legitimate only at the share of the window's reviewed alerts found
    # genuine (False: as every transaction not reviewed)
    pending_at_precision: bool = False
    # a transaction not flagged and not reviewed counts as legitimate at 1 - its score, the model's chance that
    # it is genuine (False: in full)
    unflagged_at_score: bool = True
    # while the window holds fewer legitimate transactions of the model in use, a micro-batch's own scores count
    evidence_transactions: int = 200
    # a model with fewer than that scores the window again (`rescore`, `add_evidence`) before its first threshold
    rescore_window: bool = False
    # the most transactions the window keeps (None: all): past it, one in `one_in` of them (`kept`), each counting
    # for `one_in`, so that a micro-batch's work on the window does not grow with the traffic
    max_transactions: int | None = None
    one_in: int = 1
    ids: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    times: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype="datetime64[us]"))
    scores: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    flagged: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=bool))
    by_score: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=bool))  # flagged by the score
    reasons: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=object))  # alert_reason or None
    cards: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    models: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=object))  # the model version
    # False for evidence alone (`add_evidence`): a transaction before the stream's first, which chooses thresholds
    # but was never the stream's to flag, so it spends no budget
    counted: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=bool))
    blocked: BlockedCards = dataclasses.field(default_factory=BlockedCards)  # cards -> when a fraud was confirmed
    confirmed: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=bool))  # a fraud, by its label
    labelled: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=bool))  # fraud or genuine
    # the window's ids -> their positions, made again when the window changes (a label finds its transaction)
    _index: pd.Index | None = dataclasses.field(default=None, compare=False, repr=False)
    current: float | None = None  # the threshold of the last micro-batch (None: none scored yet)
    # what the window changed since the threshold and the share spent were computed; they are computed when
    # asked for, once a micro-batch (the sort of the window's scores is the costly part)
    stale: bool = False
    _spent: float | None = None
    _legit: np.ndarray | None = None  # legitimate() as of the last refresh
    _others: float = 0.0  # the share of the legitimate transactions flagged for another reason than the score

    @classmethod
    def from_config(cls, cfg: Config) -> AlertBudget:
        """`stream.alert_budget` (checked by the configuration's schema)."""
        return cls(
            cfg.get("stream.alert_budget.enabled"),
            float(cfg.get("stream.alert_budget.fpr")),
            dt.timedelta(hours=cfg.get("stream.alert_budget.window_hours")),
            cfg.get("stream.alert_budget.pending_at_precision"),
            cfg.get("stream.alert_budget.unflagged_at_score"),
            cfg.get("stream.alert_budget.evidence_transactions"),
            cfg.get("stream.alert_budget.rescore_window"),
            cfg.get("stream.alert_budget.max_window_transactions"),
            blocked=BlockedCards(cfg.get("stream.blocked_card_days")),
        )

    def threshold(self, model_threshold: float, batch: pd.DataFrame | None = None) -> float:
        """The threshold to flag `batch`'s scores at (`score`, `model_version`, and if known `customer_id` and
        `tx_datetime`): the budget's, from the window and the batch together; the model's when the budget is
        off. Without a batch, the threshold of the last micro-batch (the model's before the first)."""
        self._refresh()
        if not self.enabled:
            return model_threshold
        if batch is None or batch.empty:
            return self.current if self.current is not None else model_threshold
        legit = self._legit if self._legit is not None else self.legitimate()
        model = batch["model_version"].iloc[-1] if "model_version" in batch else ""
        pool = legit & (self.models == model)  # the window's legitimate transactions of this model
        # the batch's own scores, while the window holds too few to choose from (`evidence_transactions`: at a
        # start, after a retraining). Its frauds are not confirmed yet and sit among its highest scores, where
        # they take the budget's room: as soon as the window, whose alerts the fraud team reviews, can choose,
        # it decides alone (a batch larger than a young window would keep its frauds setting the threshold)
        thin = int(pool.sum()) * self.one_in < self.evidence_transactions
        fresh = ~self._blocked(batch) if thin else np.zeros(len(batch), dtype=bool)
        scores = np.concatenate([self.scores[pool], batch["score"].to_numpy(dtype=float)[fresh]])
        weight = self.weights(legit)
        if weight is not None or (self.one_in > 1 and fresh.any()):
            # the batch's own count in full: they are what the threshold may flag; a kept one counts for one_in
            window = np.ones(int(pool.sum())) if weight is None else weight[pool]
            weight = np.concatenate([window, np.full(int(fresh.sum()), 1.0 / self.one_in)])
        # payments sent for review for another reason (a terminal's check) spend the budget too: the score gets
        # the rest, and at least half of it (more checks than that overspend it, and the FraudAlertBudgetOverspent
        # rule says so)
        share = max(self.fpr - self._others, self.fpr / 2)
        chosen = budget_threshold(scores, np.ones(len(scores), dtype=bool), share, weight)
        self.current = chosen if chosen is not None else model_threshold
        return self.current

    @property
    def clock(self) -> np.datetime64 | None:
        """The event clock: the newest transaction time in the window (None before the first)."""
        return self.times.max() if len(self.times) else None

    def _blocked(self, batch: pd.DataFrame) -> np.ndarray:
        """True for the payments of `batch` made on a card blocked before them (models/blocking.py)."""
        if not self.blocked or "customer_id" not in batch or "tx_datetime" not in batch:
            return np.zeros(len(batch), dtype=bool)
        return after_block(batch["customer_id"], batch["tx_datetime"], self.blocked.mapping())

    def observe(self, scored: pd.DataFrame) -> None:
        """Add a micro-batch's scored transactions (`transaction_id`, `tx_datetime`, `score`, `decision`, and if
        known `customer_id`, `model_version` and `alert_reason`, the latter when some were flagged for another
        reason than their score), drop those older than the window before the newest, and set the threshold
        anew."""
        scored = scored.drop_duplicates("transaction_id", keep="last")
        scored = scored[self.positions(scored["transaction_id"]) < 0]  # a micro-batch done again after a restart
        if self.one_in > 1:
            scored = scored[kept(scored["transaction_id"].to_numpy(dtype=np.int64), self.one_in)]
        if scored.empty:
            return
        by_score = (
            (scored["alert_reason"] == "score").to_numpy(dtype=bool)
            if "alert_reason" in scored
            else scored["decision"].to_numpy(dtype=bool)
        )
        self.ids = np.concatenate([self.ids, scored["transaction_id"].to_numpy(dtype=np.int64)])
        self.times = np.concatenate([self.times, scored["tx_datetime"].to_numpy(dtype="datetime64[us]")])
        self.scores = np.concatenate([self.scores, scored["score"].to_numpy(dtype=float)])
        self.flagged = np.concatenate([self.flagged, scored["decision"].to_numpy(dtype=bool)])
        self.by_score = np.concatenate([self.by_score, by_score])
        if "alert_reason" in scored:
            reasons = scored["alert_reason"].to_numpy(dtype=object)
        else:
            reasons = np.full(len(scored), None, dtype=object)
            reasons[by_score] = "score"
        self.reasons = np.concatenate([self.reasons, reasons])
        cards = (
            scored["customer_id"].to_numpy(dtype=np.int64)
            if "customer_id" in scored
            else np.full(len(scored), -1, dtype=np.int64)
        )
        self.cards = np.concatenate([self.cards, cards])
        models = (
            scored["model_version"].to_numpy(dtype=object)
            if "model_version" in scored
            else np.full(len(scored), "", dtype=object)
        )
        self.models = np.concatenate([self.models, models])
        self.counted = np.concatenate([self.counted, np.ones(len(scored), dtype=bool)])
        self.confirmed = np.concatenate([self.confirmed, np.zeros(len(scored), dtype=bool)])
        self.labelled = np.concatenate([self.labelled, np.zeros(len(scored), dtype=bool)])
        self._index = None
        self._forget_before(self.times.max() - np.timedelta64(self.window))
        self._thin_out()
        self.blocked.tick(self.times.max())
        self.stale = True

    def _thin_out(self) -> None:
        """Past `max_transactions`, keep one in twice as many as now until the window is within it."""
        if self.max_transactions is None:
            return
        while len(self.ids) > self.max_transactions:
            self.one_in *= 2
            self._keep(kept(self.ids, self.one_in))

    def sample_for(self, transactions: int) -> int:
        """The `one_in` a window of `transactions` is kept at (a restart's, before it reads them): the smallest
        power of two that brings them within `max_transactions`, and at least the present one."""
        one_in = self.one_in
        while self.max_transactions is not None and transactions / one_in > self.max_transactions:
            one_in *= 2
        return one_in

    WINDOW_ARRAYS = (
        "ids",
        "times",
        "scores",
        "flagged",
        "by_score",
        "reasons",
        "cards",
        "models",
        "counted",
        "confirmed",
        "labelled",
    )

    def positions(self, ids: pd.Series | np.ndarray) -> np.ndarray:
        """The positions of `ids` in the window (-1: not in it)."""
        if self._index is None:
            self._index = pd.Index(self.ids)
        return self._index.get_indexer(np.asarray(ids, dtype=np.int64))

    @property
    def frauds(self) -> set[int]:
        """The window's transactions confirmed as fraud."""
        return set(self.ids[self.confirmed].tolist())

    def _forget_before(self, oldest: np.datetime64) -> None:
        """Drop the window's transactions at or before `oldest`, and what the window knew of them."""
        self._keep(self.times > oldest)

    def _keep(self, keep: np.ndarray) -> None:
        """Keep the window's transactions where `keep`, and what the window knew of them."""
        if keep.all():
            return
        for name in self.WINDOW_ARRAYS:
            setattr(self, name, getattr(self, name)[keep])
        self._index = None

    def lacks_evidence(self, model: str) -> bool:
        """Whether the window holds fewer legitimate transactions scored by `model` than `evidence_transactions`."""
        self._refresh()
        legit = self._legit if self._legit is not None else self.legitimate()
        return int((legit & (self.models == model)).sum()) * self.one_in < self.evidence_transactions

    def others_than(self, model: str) -> np.ndarray:
        """The ids of the stream's own transactions in the window scored by another model than `model` (those
        `scores` holds: evidence from before the stream is not scored again, it leaves with the clock)."""
        return self.ids[(self.models != model) & self.counted]

    def rescore(self, ids: np.ndarray, scores: np.ndarray, model: str) -> int:
        """Take `model`'s `scores` of the window's transactions `ids` in place of their model's: the scale its
        threshold is chosen on. What was flagged and why stays as it was. Return how many it took."""
        position = self.positions(ids)
        known = position >= 0
        where = position[known]
        self.scores[where] = np.asarray(scores, dtype=float)[known]
        self.models[where] = model
        self.stale = True
        return int(known.sum())

    def add_evidence(self, evidence: pd.DataFrame, model: str) -> int:
        """Add transactions from before the stream's first (`transaction_id`, `tx_datetime`, `customer_id`,
        `score` by `model`) to an empty window as evidence alone: they count in the thresholds, not flagged and
        not reviewed, and never in the budget spent. The window's clock forgets them like any other. Return how
        many it added."""
        if len(self.ids) or evidence.empty:
            return 0
        rows = evidence.sort_values("tx_datetime", kind="mergesort")
        count = len(rows)
        self.ids = rows["transaction_id"].to_numpy(dtype=np.int64)
        self.times = rows["tx_datetime"].to_numpy(dtype="datetime64[us]")
        self.scores = rows["score"].to_numpy(dtype=float)
        self.flagged = np.zeros(count, dtype=bool)
        self.by_score = np.zeros(count, dtype=bool)
        self.reasons = np.full(count, None, dtype=object)
        self.cards = rows["customer_id"].to_numpy(dtype=np.int64)
        self.models = np.full(count, model, dtype=object)
        self.counted = np.zeros(count, dtype=bool)
        self.confirmed, self.labelled = np.zeros(count, dtype=bool), np.zeros(count, dtype=bool)
        self._index = None
        self._forget_before(self.times.max() - np.timedelta64(self.window))
        self._keep(kept(self.ids, self.one_in))
        self._thin_out()
        self.stale = True
        return len(self.ids)

    def label(self, labels: pd.DataFrame) -> None:
        """Take a micro-batch's labels (`transaction_id`, `tx_fraud`, and `customer_id` where known, in arrival
        order): a fraud confirmed no longer counts as legitimate, nor do its card's payments from now on; a
        label corrected to genuine counts its transaction again."""
        if labels.empty:
            return
        ids = labels["transaction_id"].to_numpy(dtype=np.int64)
        cards = labels["customer_id"] if "customer_id" in labels else pd.Series(np.nan, index=labels.index)
        now = self.clock
        for fraud, card, at in zip(labels["tx_fraud"].astype(int), cards, self.positions(ids)):
            if at >= 0:  # the last label of a transaction decides
                self.labelled[at], self.confirmed[at] = True, fraud == 1
            if fraud == 1 and pd.notna(card):
                self.blocked.block(int(card), now)
        self.stale = True

    def legitimate(self) -> np.ndarray:
        """True for the window's transactions not confirmed as fraud and not made on a card blocked before."""
        if not self.blocked:
            return ~self.confirmed
        return ~self.confirmed & ~after_block(self.cards, self.times, self.blocked.mapping())

    def weights(self, legit: np.ndarray) -> np.ndarray | None:
        """How much each transaction of the window counts as legitimate (None: 1 each; `legit` leaves the
        confirmed frauds out). With `unflagged_at_score`, one the stream did not flag and nobody reviewed counts
        1 - its score, the model's chance that it is genuine: the frauds it missed (at a start, the threshold
        is chosen among frauds nobody has confirmed yet) take little of the budget's room, where counted in
        full they would keep the threshold among them. A flagged one counts in full until its review says
        (its review comes within hours; a score that overrates the traffic cannot make the budget overspend
        on alerts), or with `pending_at_precision` at 1 - the precision of the window's reviewed alerts."""
        reviewed = self.labelled
        weight = np.ones(len(self.ids))
        if self.unflagged_at_score:
            weight = np.where(~self.flagged & ~reviewed, 1.0 - np.clip(self.scores, 0.0, 1.0), weight)
        if self.pending_at_precision and (self.flagged & reviewed).any():
            precision = float(self.confirmed[self.flagged & reviewed].mean())
            weight = np.where(self.flagged & ~reviewed & legit, 1.0 - precision, weight)
        return None if (weight == 1.0).all() else weight

    def room(self, reason: str, share: float) -> int:
        """How many more transactions flagged for `reason` (an `alert_reason`) keep those of the window at most
        `share` of its legitimate transactions: the reviews a part of the budget may still spend."""
        self._refresh()  # the legitimate mask, computed once a micro-batch with the threshold
        legit = (self._legit if self._legit is not None else self.legitimate()) & self.counted
        used = int((legit & self.flagged & (self.reasons == reason)).sum()) * self.one_in
        return max(0, int(share * int(legit.sum()) * self.one_in) - used)

    def spent(self) -> float | None:
        """The share of the window's legitimate transactions that were flagged (None if it has none)."""
        self._refresh()
        return self._spent

    def _refresh(self) -> None:
        if not self.stale:
            return
        self.stale = False
        self._legit = self.legitimate()
        weight = self.weights(self._legit)
        legit = self._legit & self.counted  # the stream's own: evidence alone spends nothing
        if weight is None:
            self._spent = float(self.flagged[legit].mean()) if legit.any() else None
        else:
            self._spent = float(weight[legit & self.flagged].sum() / weight[legit].sum()) if legit.any() else None
        self._others = float((self.flagged & ~self.by_score)[legit].mean()) if legit.any() else 0.0

    def fill(
        self, spark: SparkSession, scores_path: str, labels_path: str, blocked: pd.Series, newest: dt.datetime | None
    ) -> int:
        """Fill the window from `scores` (the `window` of event time up to `newest`, its newest transaction:
        `newest_scored`) and the last label of each of its transactions in `labels`, as a restart finds them,
        with `blocked` (confirmed_cards: a card -> since when) blocked; return the transactions it holds.
        A budget that is off fills it too: it still says what is spent, and exploration's share is counted in it."""
        if newest is None:
            return 0
        scores = spark.read.format("delta").load(scores_path)
        since = newest - self.window
        window = scores.where(F.col("tx_date") >= F.lit(since.date())).where(F.col("tx_datetime") > F.lit(since))
        if self.max_transactions is not None:  # a day at hundreds a second: the sample the window keeps
            self.one_in = self.sample_for(window.count())
            window = window.where(kept_column(F.col("transaction_id"), self.one_in))
        recent: pd.DataFrame = (
            window.select(
                "transaction_id", "customer_id", "tx_datetime", "score", "decision", "alert_reason", "model_version"
            )
            .orderBy("tx_datetime")
            .toPandas()
        )
        self.blocked.restore(blocked)  # from their own event time, before the labels below block at the clock
        self.observe(recent)
        if table_exists(spark, labels_path) and len(self.ids):
            ids = spark.createDataFrame(pd.DataFrame({"transaction_id": self.ids}))
            labels: pd.DataFrame = (
                last_labels(spark.read.format("delta").load(labels_path).join(F.broadcast(ids), "transaction_id"))
                .select("transaction_id", "tx_fraud", "customer_id")
                .toPandas()
            )
            self.label(labels)
        return len(self.ids)

    def describe(self) -> dict[str, Any]:
        """What the budget holds now, for the log."""
        spent = self.spent()  # and the threshold, up to date
        return {
            "transactions": int(self.counted.sum()) * self.one_in,
            "evidence": int((~self.counted).sum()) * self.one_in,
            "kept_one_in": self.one_in,
            "confirmed_frauds": int(self.confirmed.sum()) * self.one_in,
            "blocked_cards": len(self.blocked),
            "threshold": None if self.current is None else round(self.current, 5),
            "spent": None if spent is None else round(spent, 4),
        }


# the window's sample: a transaction is kept at one in k when the high bits of a multiplicative hash of its id are
# below 2**32 / k, so that the transactions kept at 2k are among those kept at k (the same in numpy and Spark SQL)
HASH_MULTIPLIER, HASH_RANGE = 1_640_531_527, 2**32


def kept(ids: np.ndarray, one_in: int) -> np.ndarray:
    """True for the transaction ids a window kept at one in `one_in` keeps."""
    if one_in == 1:
        return np.ones(len(ids), dtype=bool)
    hashed = (np.asarray(ids, dtype=np.int64) % HASH_RANGE) * HASH_MULTIPLIER % HASH_RANGE
    return hashed < HASH_RANGE // one_in


def kept_column(ids: Column, one_in: int) -> Column:
    """`kept` as a Spark SQL condition on a column of transaction ids."""
    if one_in == 1:
        return F.lit(True)
    return F.pmod(F.pmod(ids, F.lit(HASH_RANGE)) * F.lit(HASH_MULTIPLIER), F.lit(HASH_RANGE)) < F.lit(
        HASH_RANGE // one_in
    )


def newest_scored(spark: SparkSession, scores_path: str) -> dt.datetime | None:
    """The newest transaction time in `scores`, where a restart's windows end (None: nothing scored yet)."""
    if not table_exists(spark, scores_path):
        return None
    newest: dt.datetime | None = (
        spark.read.format("delta").load(scores_path).select(F.max("tx_datetime")).collect()[0][0]
    )
    return newest
