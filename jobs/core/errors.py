"""Exceptions of the jobs package. Each message names the file, option or column, what was expected,
what was found, and what to do about it."""

from __future__ import annotations


class FraudError(Exception):
    """Base class: the CLI prints these as one clear line and exits 2, without a traceback."""


class ConfigError(FraudError):
    """A configuration file, key or command-line override is wrong."""


class SetupError(FraudError):
    """Something `make setup` provides is missing (JVM jars, Java)."""


class BrokerError(FraudError):
    """The local Kafka broker could not be started, reached or stopped."""


class QueryFailed(FraudError):
    """A streaming query terminated with an error: the job exits non-zero so that it is restarted."""


class WaitTimeout(FraudError):
    """Something waited for did not happen in time (jobs/core/waiting.py)."""
