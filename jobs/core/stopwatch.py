"""Where the time goes, by stage: one stopwatch for `fraud stream`'s micro-batches (the stage counter
`fraud_batch_stage_seconds_total` and the log) and `fraud backtest`'s set-up and steps."""

from __future__ import annotations

import time


class Stopwatch:
    """Seconds by stage: `done(stage)` adds the time since the last `done` (or the start, or `restart`) to
    that stage; a stage done twice adds up."""

    def __init__(self, *stages: str) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(stages, 0.0)
        self.last = time.perf_counter()

    def restart(self) -> None:
        """Count from now: the time since the last `done` goes to no stage."""
        self.last = time.perf_counter()

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.last
        self.last = now

    def rounded(self, digits: int = 1) -> dict[str, float]:
        return {stage: round(seconds, digits) for stage, seconds in self.seconds.items()}
