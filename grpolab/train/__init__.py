"""Training on TRL: the stages of a run, from the layered config to the saved model."""


def config_error(key: str, message: str, fix: str | None = None, origin: str | None = None, **kind):
    """A ConfigError of one Problem (`kind=`: the ConfigError's kind, INVALID_CONFIG by default)."""
    from grpolab.config import ConfigError, Problem

    return ConfigError(Problem(key, message, fix, origin), **kind)
