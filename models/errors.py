"""Exceptions of the models package."""

from __future__ import annotations


class ModelError(ValueError):
    """A split, threshold or training request that cannot be satisfied; the message says why."""
