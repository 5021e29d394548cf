"""The bank's raw file format: 30-day text files named `YYYY-MM-DD.txt`, the pseudo-header verbatim, then
plain comma lines. Writing (with optional defect injection that imitates the bank's files) lives here;
reading is the cleaning job's (jobs/batch/clean.py), with the one schema of features/schema.py."""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from features.schema import RAW_HEADER, TRANSACTION_COLUMNS
from jobs.simulation.simulator import DayBatch

DAYS_PER_FILE = 30
SENTINEL_CUSTOMER = "-999999"


@dataclass(frozen=True)
class DefectRates:
    """Share of rows that get each defect (each defective row gets exactly one kind).

    The defaults are high enough that a file of a few thousand rows holds every kind; the bank's real rates
    are far lower (see ../shared/SIMULATOR.md).
    """

    duplicate: float = 0.002  # the line is written twice
    terminal_not_integer: float = 0.002  # terminal_id is "", "None" or "Err"
    customer_sentinel: float = 0.002  # customer_id is -999999
    terminal_outlier: float = 0.001  # terminal_id far above any real terminal (up to 89,518,096)
    bad_datetime: float = 0.001  # tx_datetime does not parse
    days_mismatch: float = 0.001  # tx_time_days disagrees with tx_time_seconds / 86400
    short_line: float = 0.001  # the last 1 to 4 fields are missing
    amount_not_numeric: float = 0.001  # tx_amount is "abc", "N/A" or ""
    amount_negative: float = 0.001
    amount_zero: float = 0.0005  # exactly 0.00
    label_out_of_range: float = 0.001  # tx_fraud not 0/1 or tx_fraud_scenario not 0..3

    def __post_init__(self) -> None:
        total = sum(asdict(self).values())
        if any(v < 0 for v in asdict(self).values()) or total >= 0.5:
            raise ValueError(f"defect rates must be >= 0 and add up to less than 0.5, found {asdict(self)}")

    @staticmethod
    def scaled(factor: float) -> DefectRates:
        """The default rates times `factor` (0 turns defects off)."""
        return DefectRates(**{k: v * factor for k, v in asdict(DefectRates()).items()})


DEFECT_KINDS = list(asdict(DefectRates()))
# the cleaning rule (jobs/batch/expectations/raw_transactions.json) each defect kind breaks; a short line also
# fails the not-null rule of each field it lost, an out-of-range label tx_fraud_in_set or
# tx_fraud_scenario_in_set; duplicates are removed, not quarantined
RULE_OF_DEFECT = {
    "terminal_not_integer": "terminal_id_not_null",
    "customer_sentinel": "customer_id_range",
    "terminal_outlier": "terminal_id_range",
    "bad_datetime": "tx_datetime_not_null",
    "days_mismatch": "tx_time_days_consistent",
    "short_line": "field_count",
    "amount_not_numeric": "tx_amount_not_null",
    "amount_negative": "tx_amount_positive",
    "amount_zero": "tx_amount_positive",
}


def format_day(batch: DayBatch, start: dt.date) -> pd.DataFrame:
    """One day's transactions as the raw files' text fields (a DataFrame of strings)."""
    f = batch.frame
    stamps = np.datetime64(start.isoformat(), "s") + f["tx_time_seconds"].to_numpy().astype("timedelta64[s]")
    return pd.DataFrame(
        {
            "transaction_id": f["transaction_id"].astype(str),
            "tx_datetime": pd.Series(np.datetime_as_string(stamps, unit="s")).str.replace("T", " ", regex=False),
            "customer_id": f["customer_id"].astype(str),
            "terminal_id": f["terminal_id"].astype(str),
            "tx_amount": pd.Series(np.char.mod("%.2f", f["tx_amount"].to_numpy())),
            "tx_time_seconds": f["tx_time_seconds"].astype(str),
            "tx_time_days": f["tx_time_days"].astype(str),
            "tx_fraud": f["tx_fraud"].astype(str),
            "tx_fraud_scenario": f["tx_fraud_scenario"].astype(str),
        }
    )


def inject_defects(
    lines: pd.DataFrame, rates: DefectRates, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray, Counter[str]]:
    """Damage rows of a day's formatted lines in place of the bank's defects.

    Returns:
        The lines (duplicates inserted after their original, short lines with trailing fields set to None);
        per original row, the index of its defect kind in DEFECT_KINDS, or -1; and how many rows will fail
        each cleaning rule of jobs/batch/expectations/raw_transactions.json because of what was injected.
    """
    n = len(lines)
    probs = np.array(list(asdict(rates).values()))
    kind = rng.choice(len(probs) + 1, size=n, p=np.append(probs, 1 - probs.sum())) if n else np.zeros(0, np.int64)
    kind = np.where(kind == len(probs), -1, kind)
    # A row the procedure itself rounded to 0.00 already fails the amount rule: it gets no second defect,
    # so that every quarantined row fails exactly one rule and the manifest's counts reconcile exactly.
    kind[lines["tx_amount"].to_numpy() == "0.00"] = -1
    out = lines.copy()
    k = {name: np.flatnonzero(kind == i) for i, name in enumerate(DEFECT_KINDS)}
    col = out.columns.get_loc

    def put(rows: np.ndarray, column: str, values: object) -> None:
        out.iloc[rows, col(column)] = values

    put(k["terminal_not_integer"], "terminal_id", rng.choice(["", "None", "Err"], len(k["terminal_not_integer"])))
    put(k["customer_sentinel"], "customer_id", SENTINEL_CUSTOMER)
    put(
        k["terminal_outlier"],
        "terminal_id",
        rng.integers(10_000_000, 89_518_097, len(k["terminal_outlier"])).astype(str),
    )
    put(
        k["bad_datetime"],
        "tx_datetime",
        rng.choice(["", "NaT", "2019-02-30 10:61:00", "22/08/2019 06:51", "Err"], len(k["bad_datetime"])),
    )
    days = out["tx_time_days"].to_numpy()[k["days_mismatch"]].astype(np.int64)
    put(k["days_mismatch"], "tx_time_days", (days + rng.choice([-2, -1, 1, 2, 3], len(days))).astype(str))
    put(k["amount_not_numeric"], "tx_amount", rng.choice(["abc", "N/A", ""], len(k["amount_not_numeric"])))
    neg = out["tx_amount"].to_numpy()[k["amount_negative"]]
    put(k["amount_negative"], "tx_amount", np.array(["-" + a if a != "0.00" else "-1.00" for a in neg], dtype=object))
    put(k["amount_zero"], "tx_amount", "0.00")
    rows = k["label_out_of_range"]
    which = rng.random(len(rows)) < 0.5
    put(rows[which], "tx_fraud", rng.choice(["2", "-1", "9"], int(which.sum())))
    put(rows[~which], "tx_fraud_scenario", rng.choice(["4", "5", "7"], int((~which).sum())))
    rules: Counter[str] = Counter()
    for kind_name, rule in RULE_OF_DEFECT.items():
        rules[rule] += len(k[kind_name])
    rules["tx_fraud_in_set"] = int(which.sum())
    rules["tx_fraud_scenario_in_set"] = int((~which).sum())
    for row, drop in zip(k["short_line"], rng.integers(1, 5, len(k["short_line"]))):
        out.iloc[row, len(TRANSACTION_COLUMNS) - drop :] = None
        rules.update(f"{c}_not_null" for c in TRANSACTION_COLUMNS[len(TRANSACTION_COLUMNS) - drop :])
    dup = k["duplicate"]
    if len(dup):
        order = np.argsort(np.concatenate([np.arange(n), dup]), kind="stable")
        out = pd.concat([out, out.iloc[dup]], ignore_index=True).iloc[order].reset_index(drop=True)
    return out, kind, rules


def write_lines(lines: pd.DataFrame, fh: IO[str]) -> None:
    """Append formatted rows as the bank's comma lines (a short line simply has fewer fields)."""
    short = lines.isna().any(axis=1).to_numpy()
    if not short.any():
        lines.to_csv(fh, header=False, index=False, lineterminator="\n")
        return
    buf = io.StringIO()
    for start, stop in _runs(short):
        part = lines.iloc[start:stop]
        if short[start]:
            buf.write("".join(",".join(v for v in row if v is not None) + "\n" for row in part.itertuples(index=False)))
        else:
            part.to_csv(buf, header=False, index=False, lineterminator="\n")
    fh.write(buf.getvalue())


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(mask.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [len(mask)]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def file_name(start: dt.date, first_day: int) -> str:
    """The name of the file whose first day is `first_day` (days since `start`)."""
    return f"{start + dt.timedelta(days=first_day):%Y-%m-%d}.txt"


def open_raw_file(path: Path) -> IO[str]:
    fh = path.open("w", encoding="utf-8", newline="\n")
    fh.write(RAW_HEADER + "\n")
    return fh
