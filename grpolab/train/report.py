"""What a training run prints: the plan before training and the result after."""

from __future__ import annotations

import sys
from pathlib import Path

from grpolab.config.derive import Derived
from grpolab.config.rules import eval_file
from grpolab.rewards.model import LOADED  # filled in place as reward models load


def print_plan(loader, model_name: str, model, resolved, derived: Derived, data, dry_run: bool) -> None:
    cfg = loader.config
    params = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())  # ZeRO-3: the full size
    source = loader.config_path or loader.preset_path
    overrides = " + " + ", ".join(f"{k}={v}" for k, v in loader.overrides.items()) if loader.overrides else ""
    lora = f" + LoRA r={cfg.model.lora.r}" if cfg.model.lora.enabled else ""
    if (q := cfg.model.quantization) is not None:  # QLoRA: the base weights are frozen at 4/8 bits
        lora += f", base {'4-bit ' + q.quant_type if q.load_in_4bit else '8-bit'} (bitsandbytes)"
    d, g = derived, cfg.grpo
    kl = f"on (beta {g.beta:g}, {d.reference_model_why})" if d.kl_tracked else f"off ({d.reference_model_why})"
    data_source = f"{cfg.data.dataset} [{cfg.data.split}]"
    if mixture := cfg.data.datasets:
        data_source = f"mixture of {len(mixture)} sources (seed {cfg.training.seed})"
    lines = [
        f"config       {source} (mode {cfg.mode}){overrides}",
        f"model        {model_name} ({params / 1e6:.2f}M parameters, context {data.context}){lora}",
        f"device       {resolved.summary()}",
        f"data         {data_source}: {len(data.train_set)} prompts ({data.dropped} "
        f"dropped as too long; longest kept {data.longest} tokens)",
        # per source of a mixture: its rows before prompts too long for the context are dropped
        *(
            f"  {name:<12} {c['rows']} rows (weight {c['weight']:g} of {c['of']})"
            for name, c in (data.sources or {}).items()
        ),
        f"rewards      {', '.join(f'{r.label} x{r.weight:g}' for r in cfg.rewards)}",
        # reward models are extra models in memory: said, with their size and device
        *(
            f"  reward model {m.path}: an extra model is loaded ({m.parameters / 1e6:.2f}M parameters, {m.device})"
            for m in LOADED
        ),
        f"batch        effective {d.effective_batch_size}; {d.generation_batch_size} completions = "
        f"{d.unique_prompts_per_round} prompts x {g.num_generations} per round; "
        f"{'on' if d.on_policy else 'off'}-policy",
        f"steps        {d.total_optimizer_steps} optimizer steps ({d.optimizer_steps_per_epoch} per epoch); KL {kl}",
    ]
    if data.eval_rows is not None:
        lines.append(_eval_line(cfg, data))
    if dry_run:
        lines += ["runtime      decisions for this machine:", *(f"  {line}" for line in resolved.table())]
    print("\n".join(lines), flush=True)


def _eval_line(cfg, data) -> str:
    e = cfg.eval
    source = f"[{e.split}]" if e.split else "carved from the training data (data.test_size)"
    source = f"{e.dataset} (a held-out file)" if eval_file(cfg) else source
    k = e.samples_per_prompt
    how = "greedy" if k == 1 else f"{k} samples each at temperature {e.temperature:g}"
    every = e.every_steps
    when = ("before, " if e.before_training else "") + "after" + (f" and every {every} steps" if every else "")
    dropped = f" ({data.eval_dropped} dropped as too long)" if data.eval_dropped else ""
    return f"held-out     {len(data.eval_rows)} prompts {source}{dropped}, {how}, evaluated {when}"


def print_result(run_dir: Path, summary, error: str | None) -> None:
    print(f"\nrun {summary.status}: {run_dir}")
    if error:
        print(f"  {error}")
    if (reward := summary.final.get("reward")) is not None:
        print(
            f"  steps {summary.global_step}, final reward {reward:.3f}, best "
            f"{summary.best.get('reward', reward):.3f}, {summary.train_seconds:.1f} s"
        )
    ev = summary.eval or {}
    if ev.get("stopped_early"):
        print(f"  stopped early: {ev['stopped_early']}")
    if best := ev.get("best_model"):
        print(f"  best model: {run_dir / 'best'} ({best['metric']} {best['value']:.4g} at step {best['step']})")
    if ev.get("accuracy_before") is not None:
        before, after = ev["accuracy_before"], ev["accuracy_after"]
        print(f"\n  held-out accuracy ({ev['prompts']} prompts, greedy)")
        print(f"  {'before':>8}  {'after':>8}  {'change':>8}")
        change = f"{'-':>8}  {'-':>8}" if after is None else f"{after:>8.1%}  {(after - before) * 100:>+7.1f}pt"
        print(f"  {before:>8.1%}  {change}")
    sys.stdout.flush()
