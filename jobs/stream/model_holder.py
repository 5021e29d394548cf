"""The model `fraud stream` scores with, following its registry alias between micro-batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from features.definitions import FEATURE_NAMES
from jobs.core import registry
from jobs.core.config import Config
from jobs.core.errors import FraudError


@dataclass
class ModelHolder:
    """The model the stream scores with; between micro-batches it follows the registry alias."""

    cfg: Config
    spark: SparkSession
    alias: str
    version: str = ""
    threshold: float = 0.5
    label_delay_hours: int = 0
    broadcast: Any = None
    booster: Any = None  # the driver's copy, for the alerts' explanations

    def refresh(self) -> None:
        """Load the alias's version if it moved; refuse a version the running state cannot serve."""
        version, tags = registry.resolve(self.cfg, self.alias)
        if version == self.version:
            return
        if tags.get("features", "").split(",") != FEATURE_NAMES:
            raise FraudError(
                f"model {self.alias} (version {version}) was trained on other features: {tags.get('features')}"
            )
        delay = int(tags["label_delay_hours"])
        if self.version and delay != self.label_delay_hours:
            print(
                f"stream: model version {version} has label delay {delay} h, the running state {self.label_delay_hours} h:"
                f" keeping version {self.version}; restart the stream to switch"
            )
            return
        booster, tags, version = registry.load(self.cfg, version)
        self.version, self.threshold, self.label_delay_hours = version, float(tags["threshold"]), delay
        self.booster, self.broadcast = booster, self.spark.sparkContext.broadcast(booster)
        print(f"stream: scoring with {self.alias} = version {version} (threshold {self.threshold:.5f})")

    def booster_of(self, version: str) -> Any:
        """The booster of model `version`: the one in use, or loaded from the registry."""
        return self.booster if version == self.version else registry.load(self.cfg, version)[0]
