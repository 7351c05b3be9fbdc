"""Training on TRL: the stages of a run, from the layered config to the saved model."""

from grpolab.config import ConfigError, Problem
from grpolab.config.errors import INVALID_CONFIG


def config_error(key: str, message: str, fix: str | None = None, origin: str | None = None, kind=INVALID_CONFIG):
    """A ConfigError of one Problem."""
    return ConfigError(Problem(key, message, fix, origin), kind)
