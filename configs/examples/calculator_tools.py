"""Tools for configs/examples/tools.yaml. TRL shows each tool to the model as a JSON schema built
from its type hints and docstring (the `Args:` section), so both are required."""


def add(a: float, b: float) -> float:
    """Add two numbers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b


def multiply(a: float, b: float) -> float:
    """Multiply two numbers.

    Args:
        a: the first number
        b: the second number
    """
    return a * b
