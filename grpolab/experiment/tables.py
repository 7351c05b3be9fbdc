"""Text tables for the experiment commands: one way to format a value, a percentage, a row."""

from __future__ import annotations


def fmt(value, digits: int = 4) -> str:
    """A table cell: '-' for no value, floats to `digits` significant digits."""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return "-" if value is None else str(value)


def pct(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def render_rows(rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
