"""Comment-preserving edits of a round-trip YAML tree, for save_config: a key's own comment stays after a
`# Changed from OLD` mark, and the comment lines after a section's last entry stay below what is appended or
replaced there. Values are plain data; `before` is MISSING for a key with no previous value."""

from __future__ import annotations

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.scalarstring import DoubleQuotedScalarString as DoubleQuoted
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString, SingleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from .keys import MISSING, same
from .yaml_io import _double_quoted, inline_yaml

CHANGED = "# Changed from "


def list_cut(tree, parts) -> int | None:
    """If the tree lacks the list item `parts` goes through, how many parts name that list."""
    node = tree
    for i, part in enumerate(parts):
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return i
        elif not isinstance(node, dict) or part not in node:
            later = [j for j in range(i + 1, len(parts)) if isinstance(parts[j], int)]
            return later[0] if later else None
        node = node[part]
    return None


def set_with_comment(tree: CommentedMap, parts, value, before, key: str, default_of=lambda key: MISSING) -> None:
    """Set a value in a round-trip tree and mark it `# Changed from OLD`, keeping other comments.
    A mapping value is merged key by key (as layering does); only the keys that change are marked.
    `default_of(key)` gives the previous value of a sub-key the old mapping did not have."""
    if before is not MISSING and same(before, value):
        return
    node, tail = tree, ""
    in_flow = _flow(tree)
    for part, nxt in zip(parts[:-1], parts[1:]):
        if isinstance(node, CommentedMap) and (part not in node or node[part] is None):
            if part not in node:
                tail = tail or _take_tail(node, appending_to=node)
            node[part] = CommentedMap() if not isinstance(nxt, int) else CommentedSeq()
        node = node[part]
        in_flow = in_flow or _flow(node)
    last = parts[-1]
    # Inside `{...}` / `[...]` an end-of-line comment would break the collection over lines: the
    # value changes, the user's flow style stays, and the mark is left out. A list item has none.
    if in_flow or not isinstance(node, CommentedMap):
        node[last] = to_tree(value)
        return
    old = node.get(last)
    if isinstance(value, dict) and isinstance(old, CommentedMap):
        for name, sub in value.items():
            sub_before = before[name] if isinstance(before, dict) and name in before else default_of(f"{key}.{name}")
            set_with_comment(old, [name], sub, sub_before, f"{key}.{name}", default_of)
        return
    if last not in node:
        tail = tail or _take_tail(node, appending_to=node)
    elif isinstance(old, (CommentedMap, CommentedSeq)):
        tail = tail or _take_tail(old)
    if isinstance(value, str) and "\n" in value:
        value = DoubleQuoted(value)  # one line, "...\n...", whatever quoting the old value had
    node[last] = new = to_tree(value)
    token = _eol_token(node, last)
    first, _, rest = token.value.partition("\n") if token is not None else ("", "", "")
    mark, own = "", first.strip()
    if own.startswith(CHANGED):
        mark, sep, own = own.partition("  #")
        own = "#" + own if sep else ""
    # A mark from an earlier edit names the value the file had before any edit: it stays, and
    # goes when the value is back to that one.
    if not mark:
        mark = f"{CHANGED}{inline_yaml(None if before is MISSING else before)}"
    elif mark[len(CHANGED) :] == inline_yaml(value):
        mark = ""
    comment = "  ".join(part for part in (mark, own) if part)
    if isinstance(new, (CommentedMap, CommentedSeq)) and new:
        # A block value starts on the next line: the lines after the key's comment go below it.
        tail, rest = tail or rest, ""
        _put_tail(new, tail)
        tail = ""
    column = _eol_column(node, last, value)
    if not comment and not (tail or rest):  # the mark went and the key had no comment of its own
        node.ca.items[last][2] = None
        return
    if token is None:
        node.yaml_add_eol_comment(comment, last, column=column)
        token = node.ca.items[last][2]
    elif column is not None:
        token.column = column
    if column is None:
        comment = " " + comment  # a brand-new mapping has no column yet: with the emitter's own space, two
    token.value = comment + ("\n" + (tail or rest) if (tail or rest) else "")


# ----------------------------------------------------------------------------- end-of-line comments
# The one walk behind every end-of-line comment grpolab reads or writes: `show --origins`,
# `config new` / `minimize`, `config import`, the presets' descriptions, the tuners' reasons.
def leaves(tree, prefix: str = "", depth: int = 0):
    """(dotted key, holder, name, depth) of every leaf of a round-trip mapping. A non-empty
    mapping is walked into; anything else (a scalar, a list, `{}`) is a leaf."""
    for name, value in tree.items():
        key = f"{prefix}.{name}" if prefix else name
        if isinstance(value, CommentedMap) and value:
            yield from leaves(value, key, depth + 1)
        else:
            yield key, tree, name, depth


def _eol_token(holder, name):
    slots = holder.ca.items.get(name)
    return slots[2] if slots and len(slots) > 2 else None


def eol_comment(holder, name) -> str:
    """The first line of a key's end-of-line comment, `#` included; '' if it has none."""
    token = _eol_token(holder, name)
    return token.value.partition("\n")[0].strip() if token is not None else ""


def put_eol_comment(holder, name, comment: str, depth: int) -> None:
    """Set a key's end-of-line comment, two spaces after its value; the comment lines below stay."""
    token = _eol_token(holder, name)
    if token is None:
        holder.yaml_add_eol_comment(comment, name, column=_eol_column(holder, name, holder[name], depth))
    else:
        _, newline, rest = token.value.partition("\n")
        token.value = comment + newline + rest


def commented(data: dict, comments: dict[str, str]) -> CommentedMap:
    """Plain data as a round-trip tree, with `comments` (dotted key -> `# text`) on its leaves."""
    tree = to_tree(data)
    for key, holder, name, depth in list(leaves(tree)):
        if key in comments:
            put_eol_comment(holder, name, comments[key], depth)
    return tree


def _flow(node) -> bool:
    """A mapping or list written in flow style (`{a: 1}`, `[a, b]`)."""
    return isinstance(node, (CommentedMap, CommentedSeq)) and bool(node.fa.flow_style())


def _last_leaf(container):
    """(holder, key) of the entry printed last inside a mapping or list, or None."""
    holder, key = None, None
    while isinstance(container, (CommentedMap, CommentedSeq)) and len(container):
        holder = container
        key = list(container.keys())[-1] if isinstance(container, CommentedMap) else len(container) - 1
        container = container[key]
    return (holder, key) if holder is not None else None


def _take_tail(container, appending_to: CommentedMap | None = None) -> str:
    """Detach and return the comment lines after the last entry's own end-of-line comment. Appending to
    `appending_to`, only the lines from the first comment at or left of its key column move (the next
    section's header, closing notes); comments indented deeper belong to the entry above."""
    leaf = _last_leaf(container)
    if leaf is None:
        return ""
    holder, key = leaf
    slot = 2 if isinstance(holder, CommentedMap) else 0  # where ruamel keeps the comment after an entry
    slots = holder.ca.items.get(key)
    token = slots[slot] if slots else None
    if token is None:
        return ""
    first, _, rest = token.value.partition("\n")
    lines = rest.splitlines(keepends=True)
    start = 0
    if appending_to is not None:
        column = _key_column(appending_to) or 0
        starts = [
            i for i, ln in enumerate(lines) if ln.lstrip().startswith("#") and len(ln) - len(ln.lstrip()) <= column
        ]
        start = starts[0] if starts else len(lines)
        while start > 0 and not lines[start - 1].strip():
            start -= 1  # the blank lines before a header go with it
    stay, move = "".join(lines[:start]), "".join(lines[start:])
    if not move:
        return ""
    if first.strip() or stay:
        token.value = first + "\n" + stay
    else:
        slots[slot] = None
    return move


def _key_column(node: CommentedMap) -> int | None:
    """The column of a mapping's keys as read from the file; None for a mapping built in memory."""
    try:
        return next(iter(node.lc.data.values()))[1]
    except (StopIteration, AttributeError, TypeError):
        return None


def _put_tail(container, tail: str) -> None:
    """Attach comment lines after the last entry of a (new) mapping or list."""
    leaf = _last_leaf(container) if tail else None
    if leaf is None:
        return
    holder, key = leaf
    slot = 2 if isinstance(holder, CommentedMap) else 0
    slots = holder.ca.items.setdefault(key, [None, None, None, None])
    token = slots[slot]
    if token is None:
        slots[slot] = CommentToken("\n" + tail, CommentMark(0), None)
    else:
        first, _, rest = token.value.partition("\n")
        token.value = f"{first}\n{rest}{tail}"


def _eol_column(node: CommentedMap, key, value, depth: int | None = None) -> int | None:
    """Column two spaces after `key: value` (the presets' style), from the key's or a sibling's
    indent, else from `depth` (a tree built in memory)."""
    indent = node.lc.key(key)[1] if key in (node.lc.data or {}) else _key_column(node)
    if indent is None and depth is None:
        return None  # a brand-new mapping: ruamel places the comment
    indent = 2 * depth if indent is None else indent
    stored = node.get(key)  # ruamel keeps a replaced string's quoting style
    if isinstance(value, (dict, list)) and value:
        shown = ""  # block values start below
    elif isinstance(stored, DoubleQuoted):
        shown = " " + _double_quoted(str(value))
    elif isinstance(stored, SingleQuotedScalarString):
        shown = " '" + str(value).replace("'", "''") + "'"
    elif isinstance(stored, (LiteralScalarString, FoldedScalarString)):
        return None
    else:
        shown = f" {inline_yaml(value)}"
    return indent + len(f"{key}:{shown}") + 2


def to_tree(value):
    """Plain data -> round-trip nodes (so comments can be attached to them)."""
    if isinstance(value, dict):
        return CommentedMap((k, to_tree(v)) for k, v in value.items())
    if isinstance(value, list):
        return CommentedSeq(to_tree(v) for v in value)
    return value
