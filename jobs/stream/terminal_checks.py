"""Checks of the terminals where a fraud is confirmed (`stream.terminal_checks`), kept by `fraud stream`'s
driver between micro-batches: the bank's common-point-of-purchase analysis, as a probe first.

A compromised terminal makes every payment at it fraudulent, and nothing in those payments differs from
genuine ones: only a review finds it (FRAUD-OPS.md). When a label confirms a fraud at a terminal, and it
is the first fraud confirmed of its card (a card's later frauds are those of the card, at any terminal),
the terminal is **probed**: its next `probe_payments` payments are sent to the fraud team for review, whatever
their score (0: no probe, and so no case). If a probed payment is confirmed as fraud, a **case** opens: every
payment at the terminal for the next `case_hours` of event time is sent for review; with `renew_cases`, a case
payment confirmed as fraud renews an open case for `case_hours` from then while at least RENEW_SHARE of the
case's verdicts are frauds (a compromise lasts weeks, and a case that ends while it goes on lets every later
payment there through until a dispute comes, days later; without the share, the wrong reviews and the stolen
cards that pay at an honest terminal renew its case for ever). A terminal probed or under
a case is not probed again until `cooldown_hours` after its probe began. And the fraud team **explores**: a
terminal none of whose payments was reviewed for `explore_hours` has its next payment sent for review, so that
a compromise whose frauds nobody flagged is found within about that time (null: no exploration), as long as
the exploration reviews of the alert budget's window stay within `explore_share` of its legitimate
transactions (the terminals longest without a review first). The terminals' clocks start spread over that
time, so that they do not come due together. A payment sent for review is flagged like
an alert (on the alerts topic and in `alerts`, `decision` true in `scores`) with `alert_reason`
`terminal_probe`, `terminal_case` or `terminal_explore`, and spends the alert budget like one (jobs/stream/alert_budget.py).
The probes, cases and reviews live in the driver's memory; a restart takes them up again from the payments
`scores` shows flagged in its last hours and the labels of the probed ones (`resume`, `flagged_history`). The
cards with a confirmed fraud are kept for `stream.blocked_card_days` of event time (a restart finds them in
`labels`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.core.config import Config
from jobs.core.lake import table_exists
from jobs.stream.blocked_cards import BlockedCards
from jobs.stream.label_records import last_labels

PROBE, CASE, EXPLORE = "terminal_probe", "terminal_case", "terminal_explore"
# a case is renewed only while at least this share of its verdicts are frauds: nearly all of a compromised
# terminal's are; an honest one's are only its wrong reviews and the stolen cards that pay there
RENEW_SHARE = 0.5


@dataclasses.dataclass
class TerminalChecks:
    """The terminals under a probe or a case, and the cards whose fraud was confirmed."""

    enabled: bool
    probe_payments: int
    case_hours: int
    cooldown_hours: int
    explore_hours: int | None = None
    explore_share: float = 0.01  # exploration flags at most this share of the budget window's legitimate payments
    renew_cases: bool = False  # a case payment confirmed as fraud runs its open case `case_hours` from then
    probes: dict[int, int] = dataclasses.field(default_factory=dict)  # terminal -> payments left to send
    probed_since: dict[int, np.datetime64] = dataclasses.field(default_factory=dict)  # terminal -> probe's start
    cases: dict[int, np.datetime64] = dataclasses.field(default_factory=dict)  # terminal -> the case's end
    probe_ids: dict[int, int] = dataclasses.field(default_factory=dict)  # a probed transaction -> its terminal
    # a case's payment sent for review -> its terminal and time (with renew_cases)
    case_ids: dict[int, tuple[int, np.datetime64]] = dataclasses.field(default_factory=dict)
    # an open case's terminal -> its verdicts so far: [frauds, genuine] (with renew_cases)
    case_verdicts: dict[int, list[int]] = dataclasses.field(default_factory=dict)
    fraud_cards: BlockedCards = dataclasses.field(default_factory=BlockedCards)  # cards with a confirmed fraud
    last_review: dict[int, np.datetime64] = dataclasses.field(default_factory=dict)  # terminal -> its last review
    now: np.datetime64 | None = None  # the newest transaction time scored (the event clock)
    opened: dict[str, int] = dataclasses.field(default_factory=lambda: {PROBE: 0, CASE: 0})

    @classmethod
    def from_config(cls, cfg: Config) -> TerminalChecks:
        """`stream.terminal_checks` (checked by the configuration's schema)."""
        return cls(
            cfg.get("stream.terminal_checks.enabled"),
            cfg.get("stream.terminal_checks.probe_payments"),
            cfg.get("stream.terminal_checks.case_hours"),
            cfg.get("stream.terminal_checks.cooldown_hours"),
            explore_hours=cfg.get("stream.terminal_checks.explore_hours"),
            explore_share=float(cfg.get("stream.terminal_checks.explore_share")),
            renew_cases=cfg.get("stream.terminal_checks.renew_cases"),
            fraud_cards=BlockedCards(cfg.get("stream.blocked_card_days")),
        )

    def reviews(self) -> dict[int, str]:
        """The terminals whose payments the next micro-batch sends for review, with the reason."""
        if not self.enabled:
            return {}
        stale: dict[int, str] = {}
        if self.explore_hours is not None and self.now is not None:
            due = self.now - np.timedelta64(dt.timedelta(hours=self.explore_hours))
            stale = {t: EXPLORE for t, last in self.last_review.items() if last <= due}
        return {**stale, **{t: PROBE for t, left in self.probes.items() if left > 0}, **{t: CASE for t in self.cases}}

    def pick(self, candidates: pd.DataFrame, explorations: int | None = None) -> set[int]:
        """The transaction ids to send for review among a micro-batch's candidates (`transaction_id`,
        `terminal_id`, `tx_datetime`, `alert_reason`: its payments at the terminals of `reviews`), a terminal's
        earliest first: for a probe the payments it has left, for a case all, for an exploration one, of at
        most `explorations` terminals (None: every one due), those longest without a review first."""
        if candidates.empty:
            return set()
        picked: set[int] = set()
        explored: list[tuple[np.datetime64, int, int]] = []  # (the terminal's last review, terminal, payment)
        ordered = candidates.sort_values(["tx_datetime", "transaction_id"], kind="mergesort")
        for (terminal, reason), rows in ordered.groupby(["terminal_id", "alert_reason"], sort=False):
            if reason == EXPLORE:
                last = self.last_review.get(int(terminal), np.datetime64("1970-01-01", "us"))
                explored.append((last, int(terminal), int(rows["transaction_id"].iloc[0])))
                continue
            quota = self.probes.get(int(terminal), 0) if reason == PROBE else len(rows)
            picked.update(int(t) for t in rows["transaction_id"].iloc[:quota])
        explored.sort()
        picked.update(tx for _, _, tx in explored[:explorations])
        return picked

    def observe(self, scored: pd.DataFrame) -> None:
        """Take a micro-batch's scored transactions (`transaction_id`, `terminal_id`, `tx_datetime`,
        `alert_reason`): count the probed payments sent, move the event clock, close the cases past their end."""
        if not self.enabled or scored.empty:
            return
        newest = scored["tx_datetime"].to_numpy(dtype="datetime64[us]").max()
        self.now = newest if self.now is None else max(self.now, newest)
        if self.explore_hours is not None:
            span = dt.timedelta(hours=self.explore_hours).total_seconds()
            for terminal in scored["terminal_id"].dropna().astype("int64").unique():
                if int(terminal) not in self.last_review:  # a clock that starts somewhere in the last span
                    offset = (int(terminal) * 2654435761) % int(span)
                    self.last_review[int(terminal)] = self.now - np.timedelta64(offset, "s")
            reviewed = scored[scored["alert_reason"].notna()]
            for terminal, when in reviewed.groupby("terminal_id")["tx_datetime"].max().items():
                self.last_review[int(terminal)] = max(self.last_review[int(terminal)], np.datetime64(when, "us"))
        probed = scored[scored["alert_reason"] == PROBE]
        for tx, terminal in zip(probed["transaction_id"].astype("int64"), probed["terminal_id"].astype("int64")):
            self.probe_ids[int(tx)] = int(terminal)
            self.probes[int(terminal)] = self.probes.get(int(terminal), 0) - 1
        self.probes = {t: left for t, left in self.probes.items() if left > 0}
        if self.renew_cases:
            cased = scored[scored["alert_reason"] == CASE]
            for tx, terminal, when in zip(
                cased["transaction_id"].astype("int64"),
                cased["terminal_id"].astype("int64"),
                cased["tx_datetime"].to_numpy(dtype="datetime64[us]"),
            ):
                self.case_ids[int(tx)] = (int(terminal), when)
            # a verdict later than this renews nothing that a restart would know of (`history_hours`)
            oldest = self.now - np.timedelta64(dt.timedelta(hours=self.history_hours()))
            self.case_ids = {tx: (t, when) for tx, (t, when) in self.case_ids.items() if when > oldest}
        self.cases = {t: end for t, end in self.cases.items() if end > self.now}
        self.case_verdicts = {t: counts for t, counts in self.case_verdicts.items() if t in self.cases}
        cooldown = np.timedelta64(dt.timedelta(hours=self.cooldown_hours))
        self.probed_since = {
            t: since
            for t, since in self.probed_since.items()
            if since + cooldown > self.now or t in self.cases or t in self.probes
        }
        self.fraud_cards.tick(self.now)

    def remember(self, cards: list[int]) -> None:
        """Take `cards` as cards with a confirmed fraud (a restart's, from `labels`): their next frauds are the
        card's, not their terminal's."""
        for card in cards:
            self.fraud_cards.block(int(card), self.now)

    def label(self, labels: pd.DataFrame) -> None:
        """Take a micro-batch's labels with their place (`transaction_id`, `tx_fraud`, `customer_id`,
        `terminal_id`, in arrival order): a confirmed fraud of a probe opens a case at its terminal; a card's
        first confirmed fraud probes its terminal, unless it is under a probe, a case or its cool-down."""
        if not self.enabled or labels.empty:
            return
        now = self.now if self.now is not None else np.datetime64("1970-01-01", "us")
        for tx, fraud in zip(labels["transaction_id"].astype("int64"), labels["tx_fraud"].astype(int)):
            held = self.case_ids.get(int(tx))
            if held is not None and held[0] in self.cases:
                self.case_verdicts.setdefault(held[0], [0, 0])[0 if fraud == 1 else 1] += 1
        frauds = labels[(labels["tx_fraud"].astype(int) == 1) & labels["terminal_id"].notna()]
        for tx, card, terminal in zip(
            frauds["transaction_id"].astype("int64"),
            frauds["customer_id"].astype("int64"),
            frauds["terminal_id"].astype("int64"),
        ):
            tx, card, terminal = int(tx), int(card), int(terminal)
            if tx in self.case_ids and terminal in self.cases:  # the case goes on for case_hours from now
                if renews(self.case_verdicts.get(terminal, [0, 0])):
                    self.cases[terminal] = max(
                        self.cases[terminal], now + np.timedelta64(dt.timedelta(hours=self.case_hours))
                    )
            elif tx in self.probe_ids and terminal not in self.cases:
                self.cases[terminal] = now + np.timedelta64(dt.timedelta(hours=self.case_hours))
                self.case_verdicts[terminal] = [0, 0]
                self.probes.pop(terminal, None)
                self.opened[CASE] += 1
            elif self.probe_payments and card not in self.fraud_cards and terminal not in self.probed_since:
                self.probes[terminal] = self.probe_payments
                self.probed_since[terminal] = now
                self.opened[PROBE] += 1
            self.fraud_cards.block(card, self.now)
        for tx in labels["transaction_id"].astype("int64"):  # a probe reviewed, fraud or not, is done with
            self.probe_ids.pop(int(tx), None)
            self.case_ids.pop(int(tx), None)

    def history_hours(self) -> int:
        """How many hours of flagged payments before the newest a restart reads to take the checks up again: a
        case's probe and its whole length, a probe's cool-down, an exploration's period."""
        return self.case_hours + self.cooldown_hours + (self.explore_hours or 0)

    def resume(self, flagged: pd.DataFrame, verdicts: pd.DataFrame, newest: np.datetime64) -> None:
        """Take up after a restart the checks that the tables show: `flagged`, the payments flagged in the
        `history_hours` before `newest` (the newest transaction scored) with their `transaction_id`,
        `terminal_id`, `tx_datetime` and `alert_reason`; `verdicts`, the last label (`transaction_id`, `tx_fraud`)
        of each probed one that has one. A terminal's last probe is its probe payments within `cooldown_hours` of
        the newest; a case runs `case_hours` from its first payment after that probe (or from `newest`, if a
        probed payment was confirmed as fraud and the terminal has paid nothing since); a probe waits for the
        verdicts it has not had, and without a case sends the payments it has left. With `renew_cases`, `verdicts`
        holds the case payments' too (and, where `labels` has it, `event_clock`, the stream's event clock when
        the label came): a case runs `case_hours` past its last payment confirmed as fraud (from that clock, else
        from the payment's time), and its payments without a verdict may still renew it. A terminal's last
        review is its newest flagged payment."""
        if not self.enabled:
            return
        now = newest.astype("datetime64[us]")
        self.now = now if self.now is None else max(self.now, now)
        if flagged.empty:
            return
        confirmed = verdicts[verdicts["tx_fraud"].astype(int) == 1]
        frauds = set(confirmed["transaction_id"].astype("int64"))
        labelled = set(verdicts["transaction_id"].astype("int64"))
        clock = (
            confirmed.set_index(confirmed["transaction_id"].astype("int64"))["event_clock"]
            if "event_clock" in confirmed
            else pd.Series(dtype="datetime64[us]")
        )
        cooldown, length = (np.timedelta64(dt.timedelta(hours=h)) for h in (self.cooldown_hours, self.case_hours))
        rows = flagged.assign(tx_datetime=flagged["tx_datetime"].to_numpy(dtype="datetime64[us]"))
        for terminal, mine in rows.sort_values(["tx_datetime", "transaction_id"], kind="mergesort").groupby(
            "terminal_id"
        ):
            terminal = int(terminal)
            times = mine["tx_datetime"].to_numpy(dtype="datetime64[us]")
            if self.explore_hours is not None:
                self.last_review[terminal] = times.max()
            renewed = self._renewal(terminal, mine, frauds, labelled, clock)
            probed = mine[mine["alert_reason"] == PROBE]
            if probed.empty or not self.probe_payments:  # probes off: no probe, no case goes on
                if renewed is not None and renewed > now:
                    self.cases[terminal] = renewed
                self.case_verdicts = {t: c for t, c in self.case_verdicts.items() if t in self.cases}
                continue
            probed = probed[probed["tx_datetime"] > probed["tx_datetime"].max() - cooldown]
            since = probed["tx_datetime"].to_numpy(dtype="datetime64[us]").min()
            ids = [int(t) for t in probed["transaction_id"]]
            self.probe_ids.update({tx: terminal for tx in ids if tx not in labelled})
            case = mine[(mine["alert_reason"] == CASE) & (mine["tx_datetime"] >= since)]
            if not case.empty or frauds.intersection(ids):
                opened = case["tx_datetime"].to_numpy(dtype="datetime64[us]").min() if not case.empty else now
                end = opened + length if renewed is None else max(opened + length, renewed)
                if end > now:
                    self.cases[terminal] = end
            elif len(ids) < self.probe_payments:
                self.probes[terminal] = self.probe_payments - len(ids)
            if since + cooldown > now or terminal in self.cases or terminal in self.probes:
                self.probed_since[terminal] = since
            if terminal not in self.cases:
                self.case_verdicts.pop(terminal, None)

    def _renewal(
        self, terminal: int, mine: pd.DataFrame, frauds: set[int], labelled: set[int], clock: pd.Series
    ) -> np.datetime64 | None:
        """With `renew_cases`, the end of `terminal`'s case as its payments confirmed as fraud renewed it (None:
        none did, or too few of its verdicts were frauds), from the case payments of `mine` (those of an earlier
        case at the terminal within the hours read count too); its case payments without a verdict are kept, to
        renew it when theirs comes, and its verdicts are counted."""
        if not self.renew_cases:
            return None
        case = mine[mine["alert_reason"] == CASE]
        ids = case["transaction_id"].astype("int64").to_numpy()
        times = case["tx_datetime"].to_numpy(dtype="datetime64[us]")
        self.case_ids.update({int(tx): (terminal, when) for tx, when in zip(ids, times) if int(tx) not in labelled})
        renewals = [
            np.datetime64(clock[tx], "us") if tx in clock.index and pd.notna(clock[tx]) else when
            for tx, when in zip(ids, times)
            if int(tx) in frauds
        ]
        judged = [int(tx) for tx in ids if int(tx) in labelled]
        counts = [len(renewals), len(judged) - len(renewals)]
        if judged:
            self.case_verdicts[terminal] = counts
        length = np.timedelta64(dt.timedelta(hours=self.case_hours))
        return max(renewals) + length if renewals and renews(counts) else None


def renews(verdicts: list[int]) -> bool:
    """Whether a case with these verdicts ([frauds, genuine]) is renewed by its next fraud: at least RENEW_SHARE
    of them frauds."""
    frauds, genuine = verdicts
    return frauds + genuine > 0 and frauds >= RENEW_SHARE * (frauds + genuine)


def flagged_history(
    spark: SparkSession, scores_path: str, labels_path: str, since: dt.datetime
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What `TerminalChecks.resume` takes, from the tables a restart finds: the payments flagged in `scores` after
    `since` (its newest transaction less `history_hours`), and the last label of each probe and case payment in
    `labels`."""
    columns = ["transaction_id", "terminal_id", "tx_datetime", "alert_reason"]
    verdicts = pd.DataFrame(columns=["transaction_id", "tx_fraud"])
    if not table_exists(spark, scores_path):
        return pd.DataFrame(columns=columns), verdicts
    scores = spark.read.format("delta").load(scores_path)
    flagged: pd.DataFrame = (
        scores.where(F.col("tx_date") >= F.lit(since.date()))
        .where(F.col("tx_datetime") > F.lit(since))
        .where(F.col("alert_reason").isNotNull())
        .select(*columns)
        .toPandas()
    )
    probed = flagged.loc[flagged["alert_reason"].isin([PROBE, CASE]), ["transaction_id"]]
    if not probed.empty and table_exists(spark, labels_path):
        ids = F.broadcast(spark.createDataFrame(probed.astype("int64")))
        last = last_labels(spark.read.format("delta").load(labels_path).join(ids, "transaction_id"))
        verdicts = last.select(
            "transaction_id", "tx_fraud", *(["event_clock"] if "event_clock" in last.columns else [])
        ).toPandas()
    return flagged, verdicts
