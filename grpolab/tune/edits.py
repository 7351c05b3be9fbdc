"""Shared by doctor and scale: mark the lines a tuning command changed with the reason it changed them."""

from __future__ import annotations


def annotate_changes(text: str, reasons: dict[str, str]) -> str:
    """`key: NEW  # Changed from OLD` -> `key: NEW  # Changed from OLD: <reason>` for the dotted keys in
    `reasons` (matched by their last part, within the section the line is in)."""
    out, section = [], []
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if stripped and not stripped.startswith(("#", "-")) and ":" in stripped:
            name = stripped.split(":", 1)[0].strip()
            depth = indent // 2
            section = section[:depth] + [name]
            dotted = ".".join(section)
            if "# Changed from " in line and dotted in reasons:
                head, _, tail = line.partition("# Changed from ")
                old, sep, rest = tail.partition("  #")
                end = "\n" if line.endswith("\n") else ""
                old = old.rstrip("\n").rstrip()
                rest = rest.rstrip("\n")
                line = f"{head}# Changed from {old}: {reasons[dotted]}" + (f"  #{rest}" if sep else "") + end
        out.append(line)
    return "".join(out)
