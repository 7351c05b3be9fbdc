"""doctor on synthetic run directories: each finding fires on metrics engineered to show it, a healthy
run gets none, and --write-config writes a config that validates (the real tiny runs are in
test_tune_runs.py)."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
from conftest import PYTHON, REPO_ROOT, child_env

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.yaml_io import dump_yaml
from grpolab.tune import doctor
from grpolab.tune.thresholds import THRESHOLDS, limit, table

BASE = {
    "mode": "local",
    "output_dir": "runs",
    "data": {"dataset": "builtin:addition", "eval_split": "eval"},
    "training": {
        "per_device_train_batch_size": 64,
        "learning_rate": 1e-4,
        "max_steps": 100,
        "logging_steps": 5,
    },
    "grpo": {"generation_batch_size": "auto", "num_generations": 8, "beta": 0.0},
    "generation": {"max_completion_length": 4},
    "logging": {"report_to": ["none"]},
}


def _merge(base, top):
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def healthy_metrics(n=20, **over):
    """A demo-like run: reward rising slowly with noise, ~20% zero-spread groups, short completions."""
    rows = []
    for i in range(n):
        step = 5 * (i + 1)
        row = {
            "step": step,
            "loss": 0.001 * math.sin(i),
            "grad_norm": 5 + math.sin(i),
            "learning_rate": 1e-4,
            "completions/mean_length": 3.6,
            "completions/clipped_ratio": 0.005,
            "reward": 0.30 + 0.003 * i + 0.02 * math.sin(3 * i),
            "reward_std": 0.45,
            "frac_reward_zero_std": 0.2 + 0.05 * math.sin(i),
            "entropy": 0.6 - 0.005 * i,
        }
        for key, fn in over.items():
            row[key] = fn(i, row.get(key))
        rows.append(row)
    return rows


@pytest.fixture
def make_run(tmp_path):
    def make(metrics, config=None, summary=None, info=None, name="run", torn=False, completions=None):
        run = tmp_path / name
        run.mkdir()
        loader = GRPOConfigLoader.from_dict(_merge(BASE, config or {}))
        (run / "resolved_config.yaml").write_text(dump_yaml(loader.to_dict()))
        (run / "run_info.json").write_text(json.dumps({"status": "finished", "world_size": 1, **(info or {})}))
        text = "".join(json.dumps(r) + "\n" for r in metrics)
        if torn:
            text += '{"step": 999, "reward": 0.'
        (run / "metrics.jsonl").write_text(text)
        (run / "summary.json").write_text(json.dumps(summary or {}))
        if completions is not None:
            (run / "completions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in completions))
        return run

    return make


def ids(run_dir):
    return [f.id for f in doctor.diagnose(doctor.load_run(run_dir))]


def test_healthy_run_has_no_findings(make_run):
    assert ids(make_run(healthy_metrics())) == []


def test_notes_explain_a_zero_loss_and_a_missing_kl_without_a_finding(make_run):
    run = doctor.load_run(make_run(healthy_metrics()))
    text = doctor.render(run, doctor.diagnose(run))
    assert "loss stays near 0" in text and "kl is not logged: grpo.beta is 0" in text
    assert "no findings" in text
    with_kl = doctor.load_run(
        make_run(healthy_metrics(kl=lambda i, v: 0.01), config={"grpo": {"beta": 0.02}}, name="kl")
    )
    assert not any("kl is not logged" in n for n in doctor.notes(with_kl))


def test_odd_records_do_not_break_the_reading(make_run):
    metrics = healthy_metrics()
    metrics[3]["step"] = None
    metrics[4]["reward"] = None  # TRL logs None when a window had no valid value
    metrics.append(["not", "a", "record"])
    run = doctor.load_run(make_run(metrics))
    assert run.torn_lines == 1 and doctor.diagnose(run) == []


def test_torn_last_line_is_skipped(make_run):
    run = doctor.load_run(make_run(healthy_metrics(), torn=True))
    assert run.torn_lines == 1 and len(run.metrics) == 20
    assert "1 unreadable line(s) skipped" in doctor.render(run, [])


def test_constant_zero_reward_shows_a_sample_and_hides_no_signal(make_run):
    metrics = healthy_metrics(
        reward=lambda i, v: 0.0, reward_std=lambda i, v: 0.0, frac_reward_zero_std=lambda i, v: 1.0
    )
    sample = [{"prompt": "12+34=", "completion": "x", "always_zero": 0.0}]
    run = doctor.load_run(make_run(metrics, completions=sample))
    found = doctor.diagnose(run)
    assert [f.id for f in found] == ["constant_reward"]
    f = found[0]
    assert f.title == "the reward is 0 for every completion"
    assert any("sample:" in e and "12+34=" in e for e in f.evidence)
    assert any("numeric_match" in e and "answer" in e for e in f.evidence)
    assert f.edits == {}  # no hyperparameter fixes a broken reward


def test_no_learning_signal_doubles_the_group_and_keeps_prompts(make_run):
    run = make_run(healthy_metrics(frac_reward_zero_std=lambda i, v: 0.9))
    (f,) = [f for f in doctor.diagnose(doctor.load_run(run)) if f.id == "no_learning_signal"]
    assert f.edits == {"grpo.num_generations": 16, "training.gradient_accumulation_steps": 2}
    assert "0.90 > 0.5" in f.evidence[0] and "20 logged steps (5-100)" in f.evidence[0]
    assert any("temperature" in a for a in f.alternatives)


def test_clipped_completions(make_run):
    run = make_run(
        healthy_metrics(
            **{"completions/clipped_ratio": lambda i, v: 0.95, "completions/mean_length": lambda i, v: 4.0}
        )
    )
    (f,) = [f for f in doctor.diagnose(doctor.load_run(run)) if f.id == "clipped_completions"]
    assert f.edits == {"generation.max_completion_length": 8}
    assert any("mask_truncated_completions" in a for a in f.alternatives)


def test_clipped_length_is_capped_by_the_model_context(make_run, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 12, "n_embd": 8}))
    run = make_run(
        healthy_metrics(**{"completions/clipped_ratio": lambda i, v: 0.95}),
        config={"generation": {"max_completion_length": 5}},
        info={"model": str(model)},
    )
    (f,) = [f for f in doctor.diagnose(doctor.load_run(run)) if f.id == "clipped_completions"]
    assert f.edits == {"generation.max_completion_length": 6}


def test_entropy_collapse(make_run):
    run = make_run(healthy_metrics(entropy=lambda i, v: 0.6 * 0.5**i))
    (f,) = [f for f in doctor.diagnose(doctor.load_run(run)) if f.id == "entropy_collapse"]
    assert f.edits == {"grpo.beta": 0.04}


def test_kl_growth_raises_beta(make_run):
    run = make_run(healthy_metrics(kl=lambda i, v: 0.01 * 1.5**i), config={"grpo": {"beta": 0.02}})
    found = doctor.diagnose(doctor.load_run(run))
    (f,) = [f for f in found if f.id == "kl_growth"]
    assert f.edits == {"grpo.beta": 0.04}
    steady = make_run(healthy_metrics(kl=lambda i, v: 0.05), config={"grpo": {"beta": 0.02}}, name="steady")
    assert "kl_growth" not in ids(steady)


def test_lr_too_low_when_reward_is_flat_and_groups_carry_signal(make_run):
    flat = healthy_metrics(reward=lambda i, v: 0.3 + 0.01 * math.sin(i), learning_rate=lambda i, v: 1e-6)
    run = make_run(flat, config={"training": {"learning_rate": 1e-6}})
    (f,) = [f for f in doctor.diagnose(doctor.load_run(run)) if f.id == "lr_too_low"]
    assert f.edits == {"training.learning_rate": pytest.approx(1e-5)}
    # a rising reward at the same learning rate is not flagged
    rising = make_run(healthy_metrics(learning_rate=lambda i, v: 1e-6, reward=lambda i, v: 0.2 + 0.02 * i), name="r")
    assert "lr_too_low" not in ids(rising)


def test_reward_hacking_from_eval_curve_and_summary(make_run):
    metrics = healthy_metrics(reward=lambda i, v: 0.2 + 0.03 * i)
    metrics += [{"step": 50, "eval/accuracy": 0.40}, {"step": 100, "eval/accuracy": 0.20}]
    (f,) = [f for f in doctor.diagnose(doctor.load_run(make_run(metrics))) if f.id == "reward_hacking"]
    assert f.edits == {"grpo.beta": 0.04}
    assert any("40.0% -> 20.0%" in e for e in f.evidence)
    summary = {"eval": {"accuracy_before": 0.4, "accuracy_after": 0.45}}
    assert "reward_hacking" not in ids(
        make_run(healthy_metrics(reward=lambda i, v: 0.2 + 0.03 * i), summary=summary, name="s")
    )


def test_kl_far_above_the_healthy_range_counts_even_when_flat(make_run):
    run = make_run(healthy_metrics(kl=lambda i, v: 6.0), config={"grpo": {"beta": 0.04}})
    (f,) = [f for f in doctor.diagnose(doctor.load_run(run)) if f.id == "kl_growth"]
    assert f.edits == {"grpo.beta": 0.08}


def test_a_lasting_reward_collapse_is_a_divergence_a_dip_is_not(make_run):
    collapse = make_run(healthy_metrics(reward=lambda i, v: 0.4 if i < 5 else 0.02))
    assert "divergence" in ids(collapse)
    dip = make_run(healthy_metrics(reward=lambda i, v: 0.02 if i == 12 else v), name="dip")
    assert "divergence" not in ids(dip)


def test_divergence_nan_and_grad_spike(make_run):
    nan = healthy_metrics(loss=lambda i, v: float("nan") if i == 7 else v)
    run = make_run(nan, info={"status": "failed", "error": "training diverged (NaN) at step 40"})
    (f,) = [f for f in doctor.diagnose(doctor.load_run(run)) if f.id == "divergence"]
    assert any("non-finite loss" in e for e in f.evidence)
    assert f.edits == {"training.learning_rate": pytest.approx(1e-5)}
    spike = make_run(healthy_metrics(grad_norm=lambda i, v: v if i < 10 else 5e3), name="spike")
    assert "divergence" in ids(spike)


def test_small_batch_and_ranges(make_run):
    cfg = {
        "training": {"per_device_train_batch_size": 1, "learning_rate": 1e-3},
        "grpo": {"generation_batch_size": 4, "num_generations": 2, "beta": 0.5},
    }
    found = {f.id: f for f in doctor.diagnose(doctor.load_run(make_run(healthy_metrics(), config=cfg)))}
    assert {"small_batch", "range_learning_rate", "range_beta", "range_num_generations"} <= set(found)
    assert found["range_learning_rate"].edits == {"training.learning_rate": 5e-4}
    assert found["range_beta"].edits == {"grpo.beta": 0.1}
    assert found["range_num_generations"].edits["grpo.num_generations"] == 4
    small = found["small_batch"]
    # 2 prompts per round, effective batch 1: both must reach the thresholds
    assert small.edits == {"training.gradient_accumulation_steps": 16, "grpo.generation_batch_size": 64}


def test_write_config_one_finding_marks_the_change_and_validates(make_run, tmp_path):
    run_dir = make_run(
        healthy_metrics(frac_reward_zero_std=lambda i, v: 0.9, **{"completions/clipped_ratio": lambda i, v: 0.9})
    )
    run = doctor.load_run(run_dir)
    found = doctor.diagnose(run)
    # clipping comes first: cut-off answers also make groups look alike
    assert [f.id for f in found][:2] == ["clipped_completions", "no_learning_signal"]
    out = tmp_path / "next.yaml"
    path, applied = doctor.write_next_config(run, found[1:2], out)
    text = path.read_text()
    assert "num_generations: 16  # Changed from 8: no_learning_signal" in text
    assert "gradient_accumulation_steps: 2  # Changed from 1: no_learning_signal" in text
    # minimal: `base:` is the run's config, and only the changed keys follow
    assert "\nbase: run/resolved_config.yaml\n" in text and "max_completion_length" not in text
    loaded = GRPOConfigLoader(config_path=path)
    assert loaded.config.grpo.num_generations == 16 and loaded.config.training.gradient_accumulation_steps == 2
    assert loaded.config.generation.max_completion_length == 4  # the other finding is not applied
    full, _ = doctor.write_next_config(run, found[1:2], tmp_path / "full.yaml", full=True)
    full_text = full.read_text()
    assert "base:" not in full_text and "max_completion_length: 4" in full_text
    assert "num_generations: 16  # Changed from 8: no_learning_signal" in full_text
    assert GRPOConfigLoader(config_path=full).to_dict() == loaded.to_dict()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        doctor.write_next_config(run, found[1:2], out)
    both, _ = doctor.write_next_config(run, found, tmp_path / "all.yaml")
    both_cfg = GRPOConfigLoader(config_path=both).config
    assert both_cfg.generation.max_completion_length == 8 and both_cfg.grpo.num_generations == 16


def test_next_config_is_marked_against_the_run_not_its_file(make_run, tmp_path):
    source = tmp_path / "exp.yaml"
    source.write_text("mode: local\ngeneration:\n  max_completion_length: 4  # answers are short\n")
    run_dir = make_run(
        healthy_metrics(**{"completions/clipped_ratio": lambda i, v: 0.95}),
        config={"generation": {"max_completion_length": 2}},
        info={"config_file": str(source)},
    )
    (run_dir / "overrides.yaml").write_text(
        dump_yaml(
            {
                k: v
                for k, v in GRPOConfigLoader.from_dict(_merge(BASE, {"generation": {"max_completion_length": 2}}))
                .to_dict()
                .items()
                if k != "mode"
            }
        )
    )
    run = doctor.load_run(run_dir)
    found = [f for f in doctor.diagnose(run) if f.id == "clipped_completions"]
    path, _ = doctor.write_next_config(run, found, tmp_path / "next.yaml")
    text = path.read_text()
    # the finding's key is written although it returns to the file's value: the run had 2
    assert "\nbase: exp.yaml\n" in text
    assert "max_completion_length: 4  # Changed from 2: clipped_completions" in text
    assert text.count("# Changed from") == 1  # the run's own overrides are kept, not marked as changes
    assert "# as the run had it" in text
    full, _ = doctor.write_next_config(run, found, tmp_path / "full.yaml", full=True)
    full_text = full.read_text()
    assert "max_completion_length: 4  # Changed from 2: clipped_completions  # answers are short" in full_text
    assert full_text.count("# Changed from") == 1
    assert f"a full copy of {source}" in full_text
    assert GRPOConfigLoader(config_path=full).to_dict() == GRPOConfigLoader(config_path=path).to_dict()


def _cli(*args):
    code = (
        "import sys; from grpolab.cli.main import main; rc = main(sys.argv[1:]); "
        "print('HEAVY', [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]); sys.exit(rc)"
    )
    return subprocess.run(
        [PYTHON, "-c", code, *map(str, args)],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_doctor_reads_runs_without_torch_and_writes_config(make_run, tmp_path):
    run = make_run(healthy_metrics(frac_reward_zero_std=lambda i, v: 0.9))
    out = _cli("doctor", run, "--write-config", tmp_path / "next.yaml")
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert "no_learning_signal" in out.stdout and "--set grpo.num_generations=16" in out.stdout
    assert "wrote" in out.stdout and (tmp_path / "next.yaml").is_file()
    again = _cli("doctor", run, "--write-config", tmp_path / "next.yaml")
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr and "Traceback" not in again.stderr
    as_json = _cli("doctor", run, "--json")
    data = json.loads(as_json.stdout.rsplit("HEAVY", 1)[0])
    assert data[0]["findings"][0]["set"] == [
        "--set grpo.num_generations=16",
        "--set training.gradient_accumulation_steps=2",
    ]


def test_cli_doctor_usage_errors_exit_2(tmp_path, make_run):
    missing = _cli("doctor", tmp_path / "nope")
    assert missing.returncode == 2 and "no such run directory" in missing.stderr and "Traceback" not in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "is not a run directory" in _cli("doctor", empty).stderr
    healthy = make_run(healthy_metrics())
    nothing = _cli("doctor", healthy, "--write-config", tmp_path / "x.yaml")
    assert nothing.returncode == 2 and "no finding has an edit" in nothing.stderr
    wrong = _cli(
        "doctor",
        make_run(healthy_metrics(frac_reward_zero_std=lambda i, v: 0.9), name="r2"),
        "--write-config",
        tmp_path / "y.yaml",
        "--finding",
        "kl_growth",
    )
    assert wrong.returncode == 2 and "its findings: no_learning_signal" in wrong.stderr


def test_threshold_table_documents_every_limit():
    text = table()
    for name, t in THRESHOLDS.items():
        assert name in text and t.why
    assert limit("lr_range_low") == 1e-6 and limit("lr_range_high") == 5e-4
    assert limit("beta_range_high") == 0.1 and limit("generations_range_high") == 16
