"""A full disk (issue 21, section 2): the output folder is checked for room for one checkpoint
before the model loads (and in --dry-run), and a write that fails during training names the disk
and the bytes a checkpoint needs, keeps the last complete checkpoint, and records the run as failed.
The class test injects ENOSPC into every file grpolab writes during training."""

from __future__ import annotations

import builtins
import errno
import io
import json
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
from conftest import fast_settings

from grpolab.run.exit_codes import EXIT_FAILED, EXIT_USAGE
from grpolab.train.resume import incomplete

Usage = namedtuple("Usage", "total used free")


def _full_disk(monkeypatch, free: int) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(real(path).total, real(path).used, free))


def _never_loads(monkeypatch) -> None:
    from grpolab.train import model as models

    def refuse(*args, **kwargs):
        raise AssertionError("the model loaded before the disk was checked")

    monkeypatch.setattr(models, "load_model", refuse)


@pytest.mark.parametrize("flags", [[], ["--dry-run"]])
def test_a_disk_without_room_for_a_checkpoint_is_refused_before_the_model_loads(
    tiny_gpt2, tmp_path, train, write_config, monkeypatch, flags
):
    config = write_config(fast_settings(tiny_gpt2, tmp_path / "runs"))
    _full_disk(monkeypatch, free=1000)
    _never_loads(monkeypatch)
    result = train("--config", config, *flags)
    assert result.code == EXIT_USAGE, result
    assert "Traceback" not in result.err
    line = result.err.strip().splitlines()[-1]
    # the disk (its mount point), the free and the needed bytes, and the fix
    assert "output_dir" in line and "disk mounted at /" in line and "has 1000 bytes free" in line
    assert "one checkpoint (weights and optimizer states, from the memory plan) needs about" in line
    assert "or set `output_dir` to a folder on a larger disk" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_room_enough_passes_and_the_needed_bytes_come_from_the_memory_plan(tiny_gpt2, tmp_path):
    from grpolab.config import GRPOConfigLoader
    from grpolab.train.setup import checkpoint_bytes
    from grpolab.tune import memory

    (tmp_path / "c.json").write_text(json.dumps(fast_settings(tiny_gpt2, tmp_path / "runs")))
    cfg = GRPOConfigLoader(config_path=tmp_path / "c.json").config
    parts = memory.plan(cfg, memory.resolve_shape(tiny_gpt2), world=1, gpu_gib=None).components
    needed = checkpoint_bytes(cfg, tiny_gpt2)
    assert needed == int(parts["weights"] + parts["optimizer"]) > 0
    assert checkpoint_bytes(cfg, "no-such-owner/no-such-model") is None  # not on this machine yet
    # ... checked once it has loaded, from its parameter count (what the pipeline passes then)
    count = memory.resolve_shape(tiny_gpt2).parameters
    assert checkpoint_bytes(cfg, str(count)) == pytest.approx(needed, rel=0.01)


# --------------------------------------------------------------------------- writes that fail mid-run
ENOSPC = OSError(errno.ENOSPC, "No space left on device")
TORCH_FULL = RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 86656 vs 86548")


class FullDiskAfterFirstCheckpoint:
    """The disk fills up once checkpoint-1 is whole: the next write to a file of `site` fails
    once (removing the half-written checkpoint frees the room the failure record needs)."""

    def __init__(self, run_root: Path, site: str):
        self.root, self.site, self.fired = run_root, site, False

    def armed(self, path, site: str) -> bool:
        path = Path(path)
        if self.fired or self.site != site or self.root not in path.parents:
            return False
        if not list(self.root.glob("*/checkpoint-1/trainer_state.json")):
            return False
        if site in ("checkpoint", "torch.save"):
            return path.parent.name.startswith("checkpoint-") and path.parent.name != "checkpoint-1"
        return path.name in (site, site + ".tmp")

    def install(self, monkeypatch) -> None:
        import torch

        real_open, real_save = builtins.open, torch.save

        def fake_open(file, mode="r", *args, **kwargs):
            if isinstance(file, str | Path) and any(m in mode for m in "wax"):
                site = "checkpoint" if self.site == "checkpoint" else Path(file).name.removesuffix(".tmp")
                if self.armed(file, site):
                    self.fired = True
                    Path(file).write_bytes(b'{\n  "half')  # what the disk took before it was full
                    raise OSError(ENOSPC.errno, ENOSPC.strerror, str(file))
            return real_open(file, mode, *args, **kwargs)

        def fake_save(obj, f, *args, **kwargs):
            if isinstance(f, str | Path) and self.armed(f, "torch.save"):
                self.fired = True
                Path(f).write_bytes(b"PK\x03\x04")
                raise TORCH_FULL
            return real_save(obj, f, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)
        monkeypatch.setattr(torch, "save", fake_save)


SITES = ["checkpoint", "torch.save", "metrics.jsonl", "summary.json", "run_info.json"]


@pytest.mark.slow
@pytest.mark.parametrize("site", SITES)
def test_a_write_that_fails_mid_run_names_the_disk_keeps_the_last_checkpoint_and_records_the_failure(
    tiny_gpt2, tmp_path, train, write_config, monkeypatch, site
):
    root = tmp_path / "runs"
    extra = {"training": {"max_steps": 3, "save_steps": 1}}
    config = write_config(fast_settings(tiny_gpt2, root, extra))
    disk = FullDiskAfterFirstCheckpoint(root, site)
    disk.install(monkeypatch)
    result = train("--config", config)
    assert disk.fired, f"no write to {site} after checkpoint-1"
    assert result.code == EXIT_FAILED, result
    assert "Traceback" not in result.err
    line = result.err.strip().splitlines()[-1]
    assert line.startswith("error: could not write `"), line
    if site == "torch.save":  # torch's words only as the cause, after what they mean
        assert "checkpoint-2`: the write was cut short ([enforce fail" in line
    assert "The disk mounted at /" in line and "free; one checkpoint needs about" in line
    assert "(ENOSPC)" in line or site == "torch.save"
    [run_dir] = list(root.iterdir())
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["status"] == "failed" and info["error"] == line.removeprefix("error: ")
    checkpoints = sorted(run_dir.glob("checkpoint-*"))
    if site in ("checkpoint", "torch.save", "metrics.jsonl"):  # failed in step 2, before or while saving it
        assert checkpoints == [run_dir / "checkpoint-1"]
    assert checkpoints
    assert all(incomplete(c) is None for c in checkpoints), checkpoints  # none half-written looks complete
    assert not list(run_dir.rglob("*.tmp"))
    if site == "checkpoint":
        # The run goes on from the last whole checkpoint once there is room again.
        monkeypatch.undo()
        again = train("--resume", run_dir)
        assert again.code == 0 and "resuming from checkpoint-1" in again.out, again


def test_resume_on_a_full_disk_is_a_message_not_a_traceback(tiny_gpt2, tmp_path, train, write_config, monkeypatch):
    config = write_config(fast_settings(tiny_gpt2, tmp_path / "runs", {"training": {"max_steps": 1}}))
    first = train("--config", config)
    assert first.code == 0, first
    _full_disk(monkeypatch, free=0)
    _never_loads(monkeypatch)
    result = train("--resume", first.run_dir, "--set", "training.max_steps=2")
    assert result.code == EXIT_USAGE and "Traceback" not in result.err, result
    line = result.err.strip().splitlines()[-1]
    assert "--resume" in line and "has 0 bytes free" in line and "needs about" in line


def test_a_write_refused_while_a_resume_opens_the_run_is_a_message(
    tiny_gpt2, tmp_path, train, write_config, monkeypatch
):
    """The resumed run's own records (metrics truncation, the config files, run_info.json) are
    written before training starts: a refused write there is one line too, never an OSError."""
    config = write_config(fast_settings(tiny_gpt2, tmp_path / "runs", {"training": {"max_steps": 1}}))
    first = train("--config", config)
    assert first.code == 0, first
    from grpolab.run import run_dir as run_dirs

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(first.run_dir / "resolved_config.yaml"))

    monkeypatch.setattr(run_dirs, "write_config_files", full)
    result = train("--resume", first.run_dir, "--set", "training.max_steps=2")
    assert result.code == EXIT_FAILED and "Traceback" not in result.err, result
    line = result.err.strip().splitlines()[-1]
    assert "resolved_config.yaml" in line and "No space left on device (ENOSPC)" in line and "mounted at /" in line
