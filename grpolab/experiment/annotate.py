"""`grpolab runs annotate`: a run's outcome as a comment block atop the config file it used."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.errors import CONFIG_CHANGED, advise
from grpolab.config.keys import flatten
from grpolab.config.layers import preset_dir
from grpolab.config.yaml_io import (
    edit_lock,
    inline_yaml,
    parse_yaml_text,
    read_for_edit,
    read_yaml_file,
    real_path,
    to_plain,
    version_read,
    write_atomic,
)
from grpolab.run.run_dir import OVERRIDES, RESOLVED_CONFIG

from .compare import seed_siblings
from .runs import Run, load_run
from .stats import LEVEL
from .tables import fmt, pct


def outcome_lines(run: Run, note: str | None = None, today: dt.date | None = None) -> list[str]:
    """The block's lines (without '# '): date, run, status, reward/eval/kl/runtime, the note."""
    lines = [f"Result {(today or dt.date.today()).isoformat()}: run {run.name} ({run.status}, {run.steps} steps)"]
    metrics = [f"reward final {fmt(run.final('reward'))}, best {fmt(run.best('reward'))}"]
    before, after = run.eval_accuracy()
    if after is not None or before is not None:
        metrics.append(f"eval accuracy {pct(before)} -> {pct(after)}")
    if run.final("kl") is not None:
        metrics.append(f"kl final {fmt(run.final('kl'))}")
    if run.runtime() is not None:
        metrics.append(f"runtime {run.runtime():.0f} s")
    lines.append("; ".join(metrics))
    group = seed_siblings(run)
    if group.n > 1:  # one run of several seeds: its own numbers are one draw of the seed noise
        lines.append(
            f"Seeds ({group.n} runs of this config, seeds {', '.join(map(str, group.seeds))}): reward final "
            f"{group.text('reward')}, best {group.text('reward', 'best')} (mean ± {LEVEL:.0%} CI)"
        )
    lines += [f"{'  ' if i else 'Note: '}{line}".rstrip() for i, line in enumerate((note or "").strip().splitlines())]
    return lines + [""]  # an empty `#` line ends the block, apart from the file's own header


def config_file_of(run: Run) -> Path:
    """The file the run used, refusing presets and missing files (nothing to annotate there)."""
    recorded = run.info.config_file
    if not recorded:
        message = "this run used a preset (no --config file); there is no config of its own to annotate."
        raise ConfigError.of("", message, "copy the preset to a new file and run with --config", str(run.path))
    path = Path(recorded)
    if not path.is_absolute() and run.info.cwd:
        path = Path(run.info.cwd) / path  # relative to where the run was started
    if not path.is_file():
        message = f"the config file this run used, `{recorded}`, is gone (looked at {path})."
        raise ConfigError.of("", message, "restore it from git (run_info.json has the commit)", str(run.path))
    if real_path(path).parent == preset_dir().resolve() and path.stem in ("grpo_local", "grpo_cluster", "grpo_demo"):
        message = f"this run used the preset `{path.name}`; presets are shared by every run and are not annotated."
        fix = "copy it (e.g. configs/grpo_cluster_high_lr.yaml), run with that, annotate that"
        raise ConfigError.of("", message, fix, str(run.path))
    return path


def changed_since_run(run: Run, path: Path) -> list[str]:
    """`key: run value -> value now` for each value the file (with the run's --set and flags) now changes."""
    recorded = run.path / RESOLVED_CONFIG
    if not recorded.is_file():
        return []  # a run recorded before resolved configs were kept: nothing to compare with
    then = to_plain(read_yaml_file(recorded), str(recorded))
    overrides_file = run.path / OVERRIDES
    overrides = to_plain(read_yaml_file(overrides_file), str(overrides_file)) if overrides_file.is_file() else {}
    try:
        now = GRPOConfigLoader(config_path=path, overrides=overrides or None).to_dict()
    except ConfigError as exc:
        return [f"the file no longer loads ({exc.problems[0]})"]
    before, after = flatten(then, split_lists=False), flatten(now, split_lists=False)
    # The keys the run recorded (an older or hand-made record may hold only some of them); output_dir is
    # set by the training pipeline for the run itself, not by the config file.
    return [
        f"{key}: {inline_yaml(value)} -> {inline_yaml(after.get(key))}"
        for key, value in sorted(before.items())
        if key != "output_dir" and value != after.get(key)
    ]


def annotate(
    run_dir, note: str | None = None, today: dt.date | None = None, *, allow_changed: bool = False
) -> tuple[Path, str]:
    """Put the outcome block atop the run's config file; (path, block). A file changed since the run is
    refused (its results would sit next to other values) unless `allow_changed` (the block says so)."""
    run = load_run(run_dir)
    path = config_file_of(run)
    with edit_lock(path):  # read and rewrite the file as one edit: a concurrent annotate waits
        changed = changed_since_run(run, path)
        if changed and not allow_changed:
            shown = "; ".join(changed[:3]) + (f"; and {len(changed) - 3} more" if len(changed) > 3 else "")
            message = f"changed since run {run.name} used it ({shown}); its results belong to the old values."
            fix = advise(
                cli="restore the file (its values are in RUN_DIR/resolved_config.yaml), or pass --allow-changed "
                "to annotate anyway (the block names the changes)",
                python="restore the file, or pass allow_changed=True (the block names the changes)",
            )
            raise ConfigError.of("", message, fix, str(path), CONFIG_CHANGED)
        raw = read_for_edit(path)
        bom = b"\xef\xbb\xbf" if raw.startswith(b"\xef\xbb\xbf") else b""
        original = raw[len(bom) :].decode("utf-8")
        lines = outcome_lines(run, note, today)
        if changed:  # allow_changed: say that the numbers came from other values
            lines[-1:-1] = [f"Warning: this file changed since the run: {change}" for change in changed]
        block = "".join(f"# {line}\n".replace("# \n", "#\n") for line in lines)
        # The block goes in front of the untouched text (a YAML round trip would normalise blank lines,
        # indentation and quotes); a file it would make read differently is refused.
        text = block + original
        read = lambda text: to_plain(parse_yaml_text(text, str(path)), str(path))
        if read(text) != read(original):
            message = "internal error: the annotated file would read differently; nothing was written."
            raise ConfigError.of("", message, None, str(path))
        # Built from `raw`: refused if anything rewrote the file since (no edit is lost).
        write_atomic(path, bom.decode("utf-8") + text, overwrite=True, expect=version_read(path))
        return path, block
