"""Property tests: load -> update -> save -> load reproduces the config exactly, keeps every
comment of the source file, and a second save from the saved file round-trips too."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.derive import derive

REPO = Path(__file__).resolve().parents[2]

# Presets and partial files (README's example experiments, with header comments).
SOURCES = {
    "local": None,
    "cluster": None,
    "experiment1": "# Experiment 1: Conservative Training\ntraining:\n  learning_rate: 1.0e-5  # "
    "Low LR\ngrpo:\n  beta: 0.05  # High KL penalty\n",
    "experiment2": "# Experiment 2: Aggressive Training\nmode: cluster\n\ntraining:\n  "
    "learning_rate: 1.0e-4  # High LR\n\n# GRPO\ngrpo:\n  beta: 0.005  # Low KL penalty\n",
    "experiment3": "mode: cluster\ntraining:\n  per_device_train_batch_size: 16\n  "
    "gradient_accumulation_steps: 4\n  # Effective batch size: 64\n",
}

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def floats(low, high):
    # Subnormals (below 2.2e-308) are left out: ruamel re-prints them with other digits (same value).
    return st.floats(low, high, allow_subnormal=False)


safe_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)


QUOTED = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^']|'')*'""")


def comments(text: str) -> list[str]:
    """Every comment, from `#` to the end of the line, without `# Changed from` marks."""
    lines = [QUOTED.sub('""', line) for line in text.splitlines()]  # a `#` inside quotes is not a comment
    starts = [re.search(r"(?:^|\s)(#.*)$", line) for line in lines]  # `0#` is a value, ` #` a comment
    found = [m.group(1).rstrip() for m in starts if m]
    found = [re.sub(r"^# Changed from .*?(  (?=#)|$)", "", c) for c in found]
    return [c for c in found if c]


def open_source(name: str, folder: Path) -> tuple[GRPOConfigLoader, str]:
    if SOURCES[name] is None:
        loader = GRPOConfigLoader(mode=name)
        return loader, loader.preset_path.read_text()
    path = folder / f"{name}.yaml"
    path.write_text(SOURCES[name])
    return GRPOConfigLoader(config_path=path), SOURCES[name]


@st.composite
def updates_for(draw, loader: GRPOConfigLoader) -> dict:
    """A random valid set of updates for this loader."""
    candidates = {
        "training.learning_rate": floats(1e-300, 1.0),
        "training.seed": st.integers(0, 2**31),
        "training.weight_decay": floats(0, 1),
        "grpo.beta": floats(0, 1),
        "grpo.epsilon_high": st.none() | floats(0.01, 1),
        "grpo.delta": st.none() | floats(1, 10),
        "grpo.mask_truncated_completions": st.booleans(),
        "grpo.loss_type": st.sampled_from(["grpo", "dr_grpo", "dapo", "bnpo"]),
        "generation.max_completion_length": st.integers(1, 4096),
        "generation.temperature": floats(0.01, 2.0),
        "generation.top_k": st.integers(0, 100),
        "model.lora.enabled": st.booleans(),
        "model.lora.r": st.integers(1, 256),
        "model.name_or_path": st.none() | st.sampled_from(["gpt2", "Qwen/Qwen2.5-0.5B-Instruct"]),
        "output_dir": safe_text,
        "data.system_prompt": st.none() | safe_text | st.just("line one\nline two: # not a comment"),
        "logging.report_to": st.lists(
            st.sampled_from(["wandb", "tensorboard", "none"]), min_size=1, max_size=2, unique=True
        ),
        "logging.tags": st.lists(safe_text, max_size=3),
        "rewards[0].weight": floats(0.1, 5.0),
    }
    keys = draw(st.lists(st.sampled_from(sorted(candidates)), min_size=1, max_size=6, unique=True))
    updates = {key: draw(candidates[key]) for key in keys}
    if draw(st.booleans()):
        # num_generations must divide the completions per round (at the loader's world size).
        per_round = derive(loader.config, loader.target_world_size()).generation_batch_size
        divisors = [g for g in range(2, per_round + 1) if per_round % g == 0]
        updates["grpo.num_generations"] = draw(st.sampled_from(divisors))
    return updates


def save_and_reload(loader: GRPOConfigLoader, folder: Path, name: str) -> tuple[GRPOConfigLoader, str]:
    path = loader.save_config(folder / name)
    return GRPOConfigLoader(config_path=path), path.read_text()


@SETTINGS
@given(source=st.sampled_from(sorted(SOURCES)), data=st.data())
def test_update_save_load_round_trips(source, data):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        loader, original = open_source(source, folder)
        updates = data.draw(updates_for(loader), label="updates")
        loader.update_params(updates)
        for key, value in updates.items():
            assert loader.get_param(key) == value

        first, text = save_and_reload(loader, folder, "first.yaml")
        assert first.to_dict() == loader.to_dict()
        assert comments(original) == comments(text)  # every comment kept, in order

        # Save again from the saved file, with more edits.
        more = data.draw(updates_for(first), label="more updates")
        first.update_params(more)
        second, text2 = save_and_reload(first, folder, "second.yaml")
        assert second.to_dict() == first.to_dict()
        assert comments(original) == comments(text2)

        # A save with no edits reproduces the file byte for byte.
        third, text3 = save_and_reload(second, folder, "third.yaml")
        assert text3 == text2 and third.to_dict() == second.to_dict()


@SETTINGS
@given(source=st.sampled_from(sorted(SOURCES)), lr=floats(1e-300, 1e300), beta=floats(0, 1e6))
def test_float_values_survive_exactly(source, lr, beta):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        loader, _ = open_source(source, folder)
        loader.update_params({"training.learning_rate": lr, "grpo.beta": beta})
        reloaded, text = save_and_reload(loader, folder, "out.yaml")
        assert reloaded.get_param("training.learning_rate") == lr
        assert reloaded.get_param("grpo.beta") == beta
        assert "# Changed from" in text


@SETTINGS
@given(source=st.sampled_from(sorted(SOURCES)), g=st.integers(2, 64))
def test_invalid_update_never_changes_the_saved_text(source, g):
    with tempfile.TemporaryDirectory() as tmp:
        loader, _ = open_source(source, Path(tmp))
        before = (loader.render(), loader.to_dict())
        try:
            loader.update_param("grpo.num_generations", g)
        except ConfigError:
            assert (loader.render(), loader.to_dict()) == before
        else:
            assert loader.get_param("grpo.num_generations") == g
            per_round = derive(loader.config, loader.target_world_size()).generation_batch_size
            assert per_round % g == 0
