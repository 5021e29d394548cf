"""The risk manager's question, "do we meet 98% at 5%?", answered from the stream's own tables: `scores`
(every transaction and whether it was flagged) and `labels` (every decision of the fraud team and every
dispute, the last one of a transaction counting).

Per day of the transactions' event time: alerts, reviewed alerts, confirmed frauds, false alerts, the
precision of the reviewed alerts, disputes (frauds labelled that were not flagged), and recall and FPR as far
as the labels so far allow: recall = confirmed / (confirmed + disputes); FPR = flagged and not confirmed /
every transaction not known as fraud (an alert not reviewed yet counts as a false one: the FPR can only go
down as reviews come in). A day is settled once every alert of it is reviewed and `desk.settle_days` (the
dispute delay) have passed since it, in the event time of the newest transaction: a fraud disputed later
would lower its recall.
"""

from __future__ import annotations

import datetime as dt
import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from jobs.core.config import Config
from jobs.core.lake import table_exists
from jobs.stream.blocked_cards import blocks
from jobs.stream.label_records import last_labels
from models.blocking import after_block
from models.metrics import MAX_FPR, REQUIRED_RECALL, rates

COUNTS = ["transactions", "alerts", "reviewed", "confirmed", "false_alerts", "disputes"]


def daily_counts(spark: Any, cfg: Config, days: int | None = None) -> tuple[pd.DataFrame, dt.datetime | None]:
    """COUNTS per day of `scores` with the last label of each transaction, and `left_out`: the payments of a
    card blocked before them (models/blocking.py, in event time), counted nowhere else; and the
    newest transaction's time (None, and no rows, before the first scored transaction). `days`: only the last
    that many days of event time up to the newest transaction's (`scores` is read by its `tx_date` partitions:
    a page load does not grow with the table's age); None: every day."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType, StructField, StructType

    scores_path, labels_path = cfg.table_path("scores"), cfg.table_path("labels")
    if not table_exists(spark, scores_path):
        return pd.DataFrame(columns=["day", *COUNTS, "left_out"]), None
    table = spark.read.format("delta").load(scores_path)
    if days is not None:
        newest_day = table.select(F.max("tx_date")).collect()[0][0]
        if newest_day is not None:
            table = table.where(F.col("tx_date") > F.lit(newest_day - dt.timedelta(days=days)))
    scores = table.select(
        "transaction_id",
        "customer_id",
        F.to_date("tx_datetime").alias("day"),
        "tx_datetime",
        F.col("decision").alias("flagged"),
    )
    since = pd.Series(dtype="datetime64[ns]")  # no card blocked
    if table_exists(spark, labels_path):
        labels = spark.read.format("delta").load(labels_path)
        last = last_labels(labels).select("transaction_id", F.col("tx_fraud").alias("label"))
        scores = scores.join(last, "transaction_id", "left")
        since = blocks(spark, labels_path)  # the cards blocked, on the driver (one row a confirmed fraud)
    else:
        scores = scores.withColumn("label", F.lit(None).cast("int"))

    def mark(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            yield frame.assign(left_out=after_block(frame["customer_id"], frame["tx_datetime"], since))

    kept = scores.mapInPandas(mark, StructType([*scores.schema.fields, StructField("left_out", BooleanType())]))

    def count(condition: Any) -> Any:
        return F.sum(F.when(condition, 1).otherwise(0))

    flagged, label, counted = F.col("flagged"), F.col("label"), ~F.col("left_out")
    per_day = (
        kept.groupBy("day")
        .agg(
            count(counted).alias("transactions"),
            count(counted & flagged).alias("alerts"),
            count(counted & flagged & label.isNotNull()).alias("reviewed"),
            count(counted & flagged & (label == 1)).alias("confirmed"),
            count(counted & flagged & (label == 0)).alias("false_alerts"),
            count(counted & ~flagged & (label == 1)).alias("disputes"),
            count(~counted).alias("left_out"),
            F.max("tx_datetime").alias("newest"),
        )
        .orderBy("day")
        .toPandas()
    )
    newest = per_day["newest"].max() if len(per_day) else None
    return per_day.drop(columns="newest"), (pd.Timestamp(newest).to_pydatetime() if newest is not None else None)


def daily_figures(counts: pd.DataFrame, newest: dt.datetime | None, settle_days: int) -> pd.DataFrame:
    """`counts` (COUNTS by `day`) with precision, recall, fpr (None where nothing is there to count), whether
    the day is `settled`, and `why_not` (what it still waits for)."""
    rows = []
    for day_counts in counts.to_dict("records"):
        c = {k: int(day_counts[k]) for k in COUNTS}
        known_frauds = c["confirmed"] + c["disputes"]
        legitimate = c["transactions"] - known_frauds
        day = pd.Timestamp(day_counts["day"]).date()
        due = day + dt.timedelta(days=1 + settle_days)
        waits = []
        if c["reviewed"] < c["alerts"]:
            waits.append(f"{c['alerts'] - c['reviewed']:,} alerts not reviewed")
        if newest is None or newest.date() < due:
            waits.append(f"disputes until {due:%Y-%m-%d}")
        counted = rates(known_frauds, c["confirmed"], legitimate, c["alerts"] - c["confirmed"])
        rows.append(
            {
                "day": day,
                **c,
                "left_out": int(day_counts.get("left_out", 0)),
                "unreviewed": c["alerts"] - c["reviewed"],
                # of the alerts reviewed (an alert not reviewed yet is neither right nor wrong)
                "precision": c["confirmed"] / c["reviewed"] if c["reviewed"] else None,
                "recall": counted["recall"],
                "fpr": counted["fpr"],
                "settled": not waits,
                "why_not": "; ".join(waits),
            }
        )
    return pd.DataFrame(
        rows, columns=["day", *COUNTS, "left_out", "unreviewed", "precision", "recall", "fpr", "settled", "why_not"]
    )


def verdict(days: pd.DataFrame) -> dict[str, Any]:
    """The answer over the settled days: recall, FPR, whether the requirement is met (None without any)."""
    settled = days[days["settled"]] if len(days) else days
    if settled.empty:
        return {"days": 0, "recall": None, "fpr": None, "meets": None}
    confirmed, disputes = int(settled["confirmed"].sum()), int(settled["disputes"].sum())
    legitimate = int(settled["transactions"].sum()) - confirmed - disputes
    counted = rates(confirmed + disputes, confirmed, legitimate, int(settled["alerts"].sum()) - confirmed)
    return {
        "days": len(settled),
        "first": settled["day"].min(),
        "last": settled["day"].max(),
        "recall": counted["recall"],
        "fpr": counted["fpr"],
        "meets": counted["meets_requirement"],
    }


def chart_svg(days: pd.DataFrame) -> str:
    """Daily recall and FPR against the bank's two lines, as an inline SVG; an unsettled day's points hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.6), sharex=True)
    x = list(range(len(days)))
    for axis, column, line, colour, name in (
        (top, "recall", REQUIRED_RECALL, "tab:blue", "recall"),
        (bottom, "fpr", MAX_FPR, "tab:red", "false-positive rate"),
    ):
        values = [v if v is not None and v == v else float("nan") for v in days[column]] if len(days) else []
        axis.plot(x, values, color=colour, linewidth=1.2)
        for settled in (True, False):
            points = [(i, v) for i, v, s in zip(x, values, days["settled"]) if bool(s) is settled]
            if points:
                axis.scatter(
                    *zip(*points),
                    color=colour,
                    facecolors=colour if settled else "white",
                    zorder=3,
                    label=f"{name}, {'settled' if settled else 'not settled yet'}",
                )
        axis.axhline(
            line,
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"the bank's {'minimum' if column == 'recall' else 'maximum'}: {line:.0%}",
        )
        axis.legend(loc="lower left" if column == "recall" else "upper left", fontsize=7)
        axis.grid(alpha=0.3)
    top.set_ylabel("recall")
    bottom.set_ylabel("FPR")
    bottom.set_xticks(x, [f"{d:%m-%d}" for d in days["day"]] if len(days) else [], rotation=45, fontsize=7)
    figure.tight_layout()
    out = io.StringIO()
    figure.savefig(out, format="svg")
    plt.close(figure)
    text = out.getvalue()
    return text[text.index("<svg") :]


@dataclass
class RequirementPage:
    """The figures and the chart, computed again when older than `refresh_seconds` (one Spark job over
    `scores` and `labels`): a page load never waits for more than one computation."""

    cfg: Config
    spark: Callable[[], Any]
    refresh_seconds: float = 60
    days: int | None = None  # the last N days of event time shown (desk.requirement_days)
    computed_at: float = 0.0
    value: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def figures(self) -> dict[str, Any]:
        with self.lock:
            if not self.value or time.monotonic() - self.computed_at > self.refresh_seconds:
                counts, newest = daily_counts(self.spark(), self.cfg, self.days)
                days = daily_figures(counts, newest, int(self.cfg.get("desk.settle_days")))
                self.value = {
                    "days": days,
                    "newest": newest,
                    "verdict": verdict(days),
                    "chart": chart_svg(days),
                    "at": dt.datetime.now(dt.UTC),
                }
                self.computed_at = time.monotonic()
            return self.value
