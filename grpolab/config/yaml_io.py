"""Reading and writing YAML: YAML 1.2 (so `1e-4` is a float), comments kept on round trip,
strict about everything a config file must not contain, atomic writes that never clobber."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import math
import os
import re
import tempfile
import threading
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarfloat import ScalarFloat

from .errors import CANNOT_WRITE, CONFIG_CHANGED, FILE_EXISTS, ConfigError, Problem, advise, clipped
from .keys import split_key


class _HugeNumber(Exception):
    """A whole number too large for a config; its one argument is the YAML node."""


class _Constructor(RoundTripConstructor):
    """Whole numbers are read only up to what a config can hold: past a float's range (about
    1.8e308, 309 digits) no key takes them, and past 4300 digits Python refuses to read them."""

    def construct_bounded_int(self, node):
        try:
            value = RoundTripConstructor.construct_yaml_int(self, node)
            float(value)
        except (ValueError, OverflowError):  # Python's limit on int(text) (4300 digits), or past a float
            raise _HugeNumber(node) from None
        return value


_Constructor.add_constructor("tag:yaml.org,2002:int", _Constructor.construct_bounded_int)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")  # round trip: keeps comments, order and formatting; YAML 1.2 by default
    yaml.Constructor = _Constructor
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


# Bounds on untrusted YAML, so reading any file costs bounded time and memory: a config is a few
# KB, so these are far above any real one and far below what would take minutes or gigabytes.
# Below them reading is linear in the file's size (bench/yaml_scaling.py measures it).
MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: ~8 s to read and validate at the limit on a slow core
MAX_DEPTH = 64  # nested mappings/lists; ruamel itself recurses about 300 levels deep at most
MAX_VALUES = 500_000  # values once every alias (`*name`) is expanded (a "billion laughs" file)


def _error(message: str, fix: str | None, origin: str, line=None, key: str = "") -> ConfigError:
    """One problem of the file (or of `key`), at `origin:line` where the line is known."""
    return ConfigError.of(key, message, fix, f"{origin}:{line}" if line else origin)


def _too_large(size: int, origin: str) -> ConfigError:
    what = f"is {size:,} bytes; a config file may be at most {MAX_CONFIG_BYTES:,} bytes (1 MiB)"
    return _error(what, "move large data (prompts, tables, long texts) into a data file the config names", origin)


def _too_deep(origin: str, line: int | None) -> ConfigError:
    what = f"nested more than {MAX_DEPTH} levels deep (mappings and lists inside each other)"
    return _error(what, "flatten the structure: a config is a few levels deep", origin, line)


def _line(node) -> int | None:
    lc = getattr(node, "lc", None)
    return lc.line + 1 if lc is not None and lc.line is not None else None


# A number starts where no digit is before it, and its digit runs never backtrack: on a line of
# thousands of digits the search is linear (it was cubic: minutes for a 4,300-digit `9...9.5`).
_NUMBER = re.compile(r"(?<![\d_.])[-+]?(?:\d[\d_]*+(?:\.[\d_]*+)?|\.\d[\d_]*+)[eE][-+]?\d++")


def check_bounds(tree, text: str, origin: str) -> None:
    """Refuse a parsed tree nested deeper than MAX_DEPTH or holding more than MAX_VALUES values once its aliases are
    expanded. Each distinct node is visited once (sizes are memoised), so a file whose aliases expand to billions of
    values is refused in time linear in its size. A number written past a float's range (`1e400`) reads as infinity,
    and then fails as "a finite number (got inf)" with nothing the user wrote in it: named here as typed, with its
    line. `.inf` is YAML's own infinity, a plain float, and is left to the schema."""
    seen: dict[int, tuple[int, int] | None] = {}  # id -> (expanded size, height); None while open
    overflows = []  # (mapping or list, key) of each number that read as infinity, in file order

    def walk(node, depth: int) -> tuple[int, int]:
        if not isinstance(node, (dict, list)):
            return 1, 0
        known = seen.get(id(node), False)
        if depth > MAX_DEPTH or (known and depth + known[1] > MAX_DEPTH):
            raise _too_deep(origin, _line(node))
        if known is None:
            what = "an alias (`*name`) refers to a mapping or list that contains it"
            raise _error(what, "write the values out instead of the alias", origin, _line(node))
        if known is not False:
            return known
        seen[id(node)] = None
        size, height = 1, 0
        for key, child in node.items() if isinstance(node, dict) else enumerate(node):
            if isinstance(child, ScalarFloat) and math.isinf(child):
                overflows.append((node, key))
            child_size, child_height = walk(child, depth + 1)
            size, height = size + child_size, max(height, child_height + 1)
            if size > MAX_VALUES:
                what = f"its aliases (`*name`) expand to more than {MAX_VALUES:,} values; a config needs far fewer"
                fix = "write the values out, or share settings with `base:` instead of aliases"
                raise _error(what, fix, origin, _line(node))
        seen[id(node)] = (size, height)
        return size, height

    walk(tree, 0)
    if not overflows:
        return
    node, key = overflows[0]
    try:
        line = (node.lc.value(key) if isinstance(node, dict) else node.lc.item(key))[0]
    except (AttributeError, KeyError, TypeError, IndexError):
        line = None
    lines = text.splitlines()
    found = _NUMBER.finditer(lines[line]) if line is not None and line < len(lines) else ()
    typed = next((m.group() for m in found if math.isinf(float(m.group().replace("_", "")))), None)
    in_file = line is not None and not origin.startswith("--set")  # a --set value is one line
    number = f"`{clipped(typed, 40)}`" if typed else "a number"
    what = f"{number} is beyond the largest number a float holds (about 1.8e308): it would read as infinity"
    fix = "write the number you mean (e.g. 1.0e-4); YAML's `.inf` is infinity, if that is meant"
    raise _error(what, fix, origin, line + 1 if in_file else None)


# Quoted strings and comments (skipped), and the brackets of flow collections (counted).
_FLOW_TOKEN = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\n]|'')*'|(?:^|(?<=\s))#[^\n]*|[\[\]{}]""", re.MULTILINE)


def _flow_too_deep(text: str) -> int | None:
    """The line where `[`/`{` nest deeper than MAX_DEPTH, found by one scan of the text, or None.
    ruamel's scanner costs time quadratic in the flow nesting depth (10 s at 1000 levels) before
    its own recursion fails, so depth is refused before parsing."""
    depth = 0
    for match in _FLOW_TOKEN.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return text.count("\n", 0, match.start()) + 1
        elif char in "]}":
            depth = max(depth - 1, 0)
    return None


def parse_yaml_text(text: str, origin: str):
    """Parse text into a round-trip tree; syntax errors become a Problem with line and column. Input past the bounds
    above (size, depth, expanded aliases) is a Problem too, never a hang or a RecursionError."""
    if len(text) > MAX_CONFIG_BYTES:
        raise _too_large(len(text.encode("utf-8", "surrogatepass")), origin)
    if (deep_line := _flow_too_deep(text)) is not None:
        raise _too_deep(origin, deep_line)
    directive = re.search(r"^%YAML[ \t]+(\S+)", text, re.MULTILINE)
    if directive and directive.group(1) != "1.2":
        line = text[: directive.start()].count("\n") + 1
        what = f"`%YAML {directive.group(1)}`: config files are read as YAML 1.2 only"
        raise _error(what, "delete that line", origin, line)
    try:
        tree = _yaml().load(text)
    except RecursionError:
        raise _too_deep(origin, None) from None
    except _HugeNumber as exc:
        node = exc.args[0]
        mark, digits = node.start_mark, sum(c.isdigit() for c in node.value)
        where = origin if origin.startswith("--set") else f"{origin}:{mark.line + 1}:{mark.column + 1}"
        what = (
            f"`{clipped(node.value, 40)}` is a whole number of {digits:,} digits, larger than any number "
            "a config holds (counts fit in 64 bits, 19 digits; a float stops at about 1.8e308)"
        )
        raise _error(what, "write the number you mean (e.g. 100)", where) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark else origin
        what = exc.problem or exc.context or "invalid YAML"
        fix = "check indentation, quotes and brackets on that line"
        if "duplicate key" in what:
            fix = "keep one of the two entries"
        elif "another document" in what:
            what = "a config file holds one YAML document, found a second one"
            fix = "delete the `---` line and merge the two parts"
        raise _error(f"YAML error: {what}", fix, where) from None
    except YAMLError as exc:
        raise _error(f"YAML error: {exc}", None, origin) from None
    check_bounds(tree, text, origin)
    return tree


def real_path(path: str | os.PathLike) -> Path:
    """The path with its links followed, as far as they lead. Path.resolve() raises on a link loop
    (RuntimeError on Python 3.11); a loop here stays the path it is, for the reader to refuse."""
    return Path(os.path.realpath(Path(path).expanduser()))


def read_yaml_file(path: str | os.PathLike) -> CommentedMap:
    """Read a config file: a UTF-8 YAML mapping. Every way it can be malformed is a ConfigError."""
    origin = str(path)  # as the user wrote it
    path = Path(path).expanduser()
    if not path.exists():
        if path.is_symlink():  # the link is there; what it points at is not (or it points at itself)
            what = "leads back to itself (a link loop)" if real_path(path) == path.absolute() else "does not exist"
            fix = "point the link at a config file, or pass the file itself"
            raise _error(f"is a symbolic link to `{os.readlink(path)}`, which {what}", fix, origin)
        raise _error("file not found", "check the path (relative paths start from the current directory)", origin)
    if path.is_dir():
        raise _error("is a directory, not a YAML file", f"pass a file inside it, e.g. {path}/grpo_local.yaml", origin)
    if not path.is_file():  # a device (/dev/zero), a pipe, a socket: reading it may never end
        raise _error("is not a regular file (a device, pipe or socket)", "pass a YAML file", origin)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:  # refused before reading it: memory stays bounded too
            raise _too_large(size, origin)
        with path.open("rb") as handle:  # at most one byte past the limit, whatever stat said
            raw = handle.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:  # a file that grew after stat (or a /proc file that says 0)
            raise _too_large(len(raw), origin)
    except OSError as exc:
        raise _error(f"cannot read the file: {exc.strerror or exc}", "check its permissions", origin) from None
    remember_read(path, raw)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        what = f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        raise _error(what, "save the file as UTF-8", origin, line) from None
    comments_only = all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines())
    data = None if comments_only else parse_yaml_text(text, origin)
    if data is None:
        raise _error("file is empty", "add at least one key, e.g. `mode: local`", origin)
    if not isinstance(data, CommentedMap):
        kinds = {CommentedSeq: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
        kind = kinds.get(type(data), f"a {type(data).__name__}")
        what = f"top level must be a mapping of sections (`training:`, `grpo:` ...), got {kind}"
        raise _error(what, "write `key: value` pairs at the top level", origin)
    return data


def line_of(tree, key) -> int | None:
    """1-based line of a key (dotted, or its parts) in a round-trip tree: the deepest part found."""
    try:
        parts = split_key(key) if isinstance(key, str) else list(key)
    except ConfigError:
        return None
    node, line = tree, None
    for part in parts:
        in_map = isinstance(node, CommentedMap) and part in node
        if not in_map and not (isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node)):
            return line
        pos = (node.lc.data or {}).get(part)  # keys brought in by a `<<:` merge have no position
        line = pos[0] + 1 if pos else line
        node = node[part]
    return line


def to_plain(node, origin: str, tree=None, path: str = ""):
    """Round-trip tree -> plain dicts/lists/scalars. Tagged or non-plain values are rejected, never built."""
    tag = getattr(getattr(node, "tag", None), "value", None)
    if tag and not tag.startswith("tag:yaml.org,2002:") or (tag and "python/" in tag):
        what = f"YAML tag `{tag}` is not allowed (tags are never executed)"
        fix = "remove the tag and write a plain value"
    elif isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if not isinstance(key, str):
                pos = (getattr(node, "lc", None) and node.lc.data or {}).get(key)
                raise _error(f"keys must be strings, got {key!r}", "quote the key", origin, pos and pos[0] + 1, path)
            out[key] = to_plain(value, origin, tree, f"{path}.{key}" if path else key)
        return out
    elif isinstance(node, list):
        return [to_plain(v, origin, tree, path) for v in node]
    elif isinstance(node, bool) or node is None:
        return node
    elif isinstance(node, (int, float, str)):
        return int(node) if isinstance(node, int) else float(node) if isinstance(node, float) else str(node)
    elif isinstance(node, bytes):
        what, fix = "binary data (`!!binary`) is not allowed", "write a plain value"
    elif isinstance(node, (datetime.date, datetime.datetime)):
        what, fix = f"a date ({node}) is not allowed", f'quote it if you mean a string: "{node}"'
    else:
        what = f"value of type {type(node).__name__} is not allowed"
        fix = "use a number, string, boolean, list or mapping"
    raise _error(what, fix, origin, line_of(tree, path) if tree is not None else None, path)


def parse_scalar(text: str, origin: str):
    """Parse the value of `--set key=value` as YAML 1.2 (`1e-4` -> float, `[a, b]` -> list)."""
    data = parse_yaml_text(f"v: {text}" if text.strip() else "v: ''", origin)
    return to_plain(data, origin)["v"]


def format_float(value: float) -> str:
    """Shortest exact text for a float; small and large ones in the presets' `5.0e-5` style."""
    if value != value or value in (math.inf, -math.inf):
        return ".nan" if value != value else ".inf" if value > 0 else "-.inf"
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        text = repr(value)
        return text if any(c in text for c in ".e") else text + ".0"
    for digits in range(1, 18):
        mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
        if float(f"{mantissa}e{exponent}") == value:
            break
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}e{int(exponent)}"


def _represent_loaded_float(representer, value):
    """A float read from the file keeps its text, unless ruamel would print it inexactly."""
    node = RoundTripRepresenter.represent_scalar_float(representer, value)
    try:
        exact = float(node.value.replace("_", "")) == float(value)
    except ValueError:
        exact = False
    # ruamel rebuilds the text from the value; with 16+ digits its last digit can drift from save
    # to save, so long ones get the shortest exact text instead (stable on every later save).
    digits = len(re.sub(r"[^0-9]", "", re.split("[eE]", node.value)[0]).lstrip("0"))
    if (not exact or digits >= 16) and float(value) == float(value):
        node.value = format_float(float(value))
    return node


def dump_yaml(data) -> str:
    yaml = _yaml()
    representer = yaml.representer
    representer.add_representer(float, lambda r, v: r.represent_scalar("tag:yaml.org,2002:float", format_float(v)))
    representer.add_representer(ScalarFloat, _represent_loaded_float)
    representer.add_representer(type(None), lambda r, v: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    stream = io.StringIO()
    yaml.dump(data, stream)
    # Comments read from a CRLF file keep their `\r`: the text is LF throughout, and whoever
    # writes it gives it a file's line endings (styled_like).
    text = stream.getvalue().replace("\r\n", "\n")
    return text if text.endswith("\n") else text + "\n"  # an added comment on the last line has none


def inline_yaml(value) -> str:
    """A value as it would appear after `key: ` in flow style, on one line: for messages and
    `# Changed from` comments."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        try:
            plain = parse_scalar(value, "<value>") == value
        except ConfigError:
            plain = False
        if plain and value == value.strip() and not any(c in value for c in "#,[]{}\"'") and value.isprintable():
            return value
        return _double_quoted(value)
    if isinstance(value, list):
        return "[" + ", ".join(inline_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{inline_yaml(k)}: {inline_yaml(v)}" for k, v in value.items()) + "}"
    return str(value)  # an int


def _double_quoted(text: str) -> str:
    """A YAML double-quoted scalar on one line: JSON escapes, plus escapes for the characters
    YAML treats as line breaks or does not allow unescaped."""
    return "".join(
        c if c.isprintable() or c == " " else f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"
        for c in json.dumps(text, ensure_ascii=False)
    )


# ---------------------------------------------------------------- concurrent edits
# Every read-modify-write of a user file (config set, save_config, minimize, annotate, sweep trial
# files, doctor --write-config) ends in write_atomic, so that is where lost updates are stopped:
#  - edit_lock(path) is held across the whole edit by the commands, so two edits of one file run
#    one after the other and the second re-reads what the first wrote;
#  - write_atomic compares the file with the version this thread last read of it (read_yaml_file
#    and read_for_edit remember it) and refuses "changed while editing: rerun" where another
#    writer got in between, so even an edit made without the lock never silently drops one.

_held = threading.local()  # the folders this thread holds: the lock is re-entrant within a thread
_thread_locks: dict[str, threading.RLock] = {}
_thread_locks_guard = threading.Lock()
_seen = threading.local()  # real path -> digest of the bytes this thread last read or wrote there


def _digest(raw: bytes | None) -> str | None:
    return None if raw is None else hashlib.sha256(raw).hexdigest()


def remember_read(path, raw: bytes | None) -> None:
    """Record the bytes this thread read from (or wrote to) `path`: the version its edit starts from."""
    _seen.__dict__.setdefault("files", {})[os.path.realpath(os.path.expanduser(path))] = _digest(raw)


def forget_reads() -> None:
    """Start a new command: what earlier commands of this thread read is not what this one edits."""
    _seen.files = {}


def version_read(path) -> str | None:
    """The digest of `path` as this thread last read it, None if it has not read it."""
    return getattr(_seen, "files", {}).get(os.path.realpath(os.path.expanduser(path)))


def read_for_edit(path) -> bytes:
    """The bytes of a file about to be edited; write_atomic refuses if it changes before the write."""
    raw = Path(path).read_bytes()
    remember_read(path, raw)
    return raw


def changed_while_editing(path) -> ConfigError:
    what = "changed while editing (another command or editor wrote it after this one read it); nothing was written"
    return ConfigError.of("", what, "rerun", str(path), CONFIG_CHANGED)


@contextlib.contextmanager
def edit_lock(path):
    """Hold the edit lock of `path` (an exclusive flock on its folder, re-entrant in a thread, exclusive across threads
    and processes). The folder, not the file, is locked: an atomic write replaces the file's inode, so a lock on the
    file itself would not be seen by the next writer. Where the folder cannot be locked (no flock, no read access) the
    version check of write_atomic still refuses a lost update."""
    folder = real_path(path).parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent  # a new file in a folder not made yet: its nearest existing folder
    key, held = str(folder), _held.__dict__.setdefault("folders", set())
    if key in held:
        yield
        return
    with _thread_locks_guard:
        rlock = _thread_locks.setdefault(key, threading.RLock())
    with rlock:
        fd = None
        try:
            import fcntl

            fd = os.open(key, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except (ImportError, OSError):
            if fd is not None:
                os.close(fd)
            fd = None
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
            if fd is not None:
                os.close(fd)  # closing the descriptor releases the flock


def folder_named(path: str) -> Problem | None:
    """A file to write, named with a trailing slash (Path() would silently drop it)."""
    if path.endswith(("/", os.sep)) and path.strip("/" + os.sep):
        fix = f"drop the trailing /: {path.rstrip('/')}"
        return Problem("", "ends in /, so it names a folder, not a file", fix, path)
    return None


def write_atomic(path: str | os.PathLike, text: str, *, overwrite: bool = False, expect: str | None = None) -> Path:
    """Write text to path via a temp file in the same folder. Without overwrite, an existing
    file is never replaced (the final step is a hard link, which fails if the name exists).
    Under the file's edit lock, a file that changed since this thread read it (or since `expect`,
    a digest from version_read) is refused. A symbolic link stays a link, a file with several hard
    links is rewritten in place, and permissions, owner, CRLF endings and a UTF-8 BOM are kept."""
    if isinstance(path, str) and (problem := folder_named(path)):
        raise ConfigError(problem, CANNOT_WRITE)
    path = Path(path).expanduser()  # `~/x.yaml` from Python or a quoted shell word: the home folder
    with edit_lock(path):
        return _write_atomic(path, text, overwrite, expect)


def _write_atomic(path: Path, text: str, overwrite: bool, expect: str | None) -> Path:
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    fix = "choose a new file name, or pass " + advise(cli="--force", python="overwrite=True")
    exists = ConfigError.of("", "refusing to overwrite it", fix, str(path), FILE_EXISTS)
    cannot = lambda message, fix: ConfigError.of("", message, fix, str(path), CANNOT_WRITE)

    if target.is_dir():
        raise cannot("is a directory", "give a file path ending in .yaml")
    if target.exists() and not target.is_file():
        what = "is not a regular file (a device, pipe or socket); grpolab only writes regular files"
        raise cannot(what, "give the path of a new or regular file")
    if (target.exists() or path.is_symlink()) and not overwrite:
        raise exists
    old = target.stat() if target.is_file() else None
    if old is not None:
        raw = target.read_bytes()
        expected = expect if expect is not None else version_read(target)
        if expected is not None and _digest(raw) != expected:
            raise changed_while_editing(path)
        text = keep_file_style(raw, text)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise cannot(f"{exc.strerror or exc}", "choose a writable folder") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, old.st_mode & 0o7777 if old is not None else 0o666 & ~_umask())
        if old is not None:
            with contextlib.suppress(OSError):  # not ours to give away: the new file keeps our own owner
                os.chown(tmp, old.st_uid, old.st_gid)
        if overwrite and old is not None and old.st_nlink > 1:
            # Replacing the name would split it from its other hard links; the temp file is
            # complete, so copying it into the file is the shortest window left.
            target.write_text(text, encoding="utf-8", newline="")
        elif overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise exists from None
            except OSError:  # no hard links on this file system: exclusive create still never clobbers
                try:
                    with open(target, "x", encoding="utf-8", newline="") as handle:
                        handle.write(text)
                except FileExistsError:
                    raise exists from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    try:  # this thread's next edit starts from what it wrote
        remember_read(target, target.read_bytes())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        remember_read(target, None)
    return path


def keep_file_style(old: bytes, text: str) -> str:
    """`text` in the line endings and BOM of the file it replaces (`old`, its bytes): a CRLF
    file stays CRLF, a file with a UTF-8 BOM keeps it."""
    bom = old.startswith(b"\xef\xbb\xbf")
    body, text = old.removeprefix(b"\xef\xbb\xbf"), text.removeprefix("\ufeff")
    if body.count(b"\r\n") and body.count(b"\r\n") == body.count(b"\n"):
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return "\ufeff" + text if bom else text


def styled_like(path, text: str) -> str:
    """`text` made from the file at `path`, in that file's line endings and BOM: an edit written to
    another file (`-o`, `minimize`, `save_config(new_path)`) keeps them too."""
    try:
        return keep_file_style(Path(path).read_bytes(), text)
    except OSError:
        return text


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
