"""Shared by doctor and scale: mark the lines a tuning command changed with the reason it changed them."""

from __future__ import annotations

from grpolab.config.yaml_edit import CHANGED, eol_comment, leaves, put_eol_comment
from grpolab.config.yaml_io import dump_yaml, parse_yaml_text


def annotate_changes(text: str, reasons: dict[str, str]) -> str:
    """`key: NEW  # Changed from OLD` -> `key: NEW  # Changed from OLD: <reason>` for the dotted keys
    in `reasons`; the key's own comment stays after the mark."""
    tree = parse_yaml_text(text, "<changes>")
    for key, holder, name, depth in list(leaves(tree)):
        comment = eol_comment(holder, name)
        if key in reasons and comment.startswith(CHANGED):
            mark, sep, own = comment.partition("  #")
            put_eol_comment(holder, name, f"{mark}: {reasons[key]}{sep}{own}", depth)
    return dump_yaml(tree)
