"""What a training run prints: the plan before training and the result after."""

from __future__ import annotations

import sys
from pathlib import Path


def print_plan(loader, model_name: str, model, resolved, derived: dict, data, dry_run: bool) -> None:
    cfg = loader.config
    params = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())  # ZeRO-3: the full size
    source = loader.config_path or loader.preset_path
    overrides = " + " + ", ".join(f"{k}={v}" for k, v in loader.overrides.items()) if loader.overrides else ""
    lora = f" + LoRA r={cfg.model.lora.r}" if cfg.model.lora.enabled else ""
    d, g = derived, cfg.grpo
    kl = f"on (beta {g.beta:g}, reference model loaded)" if d["kl_tracked"] else "off (beta 0: no reference model)"
    lines = [
        f"config       {source} (mode {cfg.mode}){overrides}",
        f"model        {model_name} ({params / 1e6:.2f}M parameters, context {data.context}){lora}",
        f"device       {resolved.summary()}",
        f"data         {cfg.data.dataset} [{cfg.data.split}]: {len(data.train_set)} prompts ({data.dropped} "
        f"dropped as too long; longest kept {data.longest} tokens)",
        f"rewards      {', '.join(f'{r.name} x{r.weight:g}' for r in cfg.rewards)}",
        f"batch        effective {d['effective_batch_size']}; {d['generation_batch_size']} completions = "
        f"{d['unique_prompts_per_round']} prompts x {g.num_generations} per round; "
        f"{'on' if d['on_policy'] else 'off'}-policy",
        f"steps        {d['total_optimizer_steps']} optimizer steps "
        f"({d['optimizer_steps_per_epoch']} per epoch); KL {kl}",
    ]
    if data.eval_rows is not None:
        every = f", and every {cfg.data.eval_every_steps} steps" if cfg.data.eval_every_steps else ""
        lines.append(
            f"held-out     {len(data.eval_rows)} prompts from [{cfg.data.eval_split}], greedy accuracy before "
            f"and after{every}"
        )
    if dry_run:
        lines += ["runtime      decisions for this machine:", *(f"  {line}" for line in resolved.table())]
    print("\n".join(lines), flush=True)


def print_result(run_dir: Path, summary, error: str | None) -> None:
    final = summary.final
    print(f"\nrun {summary.status}: {run_dir}")
    if error:
        print(f"  {error}")
    reward = final.get("reward")
    if reward is not None:
        print(
            f"  steps {summary.global_step}, final reward {reward:.3f}, best "
            f"{summary.best.get('reward', reward):.3f}, {summary.train_seconds:.1f} s"
        )
    ev = summary.eval
    if ev and ev.get("accuracy_before") is not None:
        before, after = ev["accuracy_before"], ev["accuracy_after"]
        print(f"\n  held-out accuracy ({ev['prompts']} prompts, greedy)")
        print(f"  {'before':>8}  {'after':>8}  {'change':>8}")
        if after is None:
            print(f"  {before:>8.1%}  {'-':>8}  {'-':>8}")
        else:
            print(f"  {before:>8.1%}  {after:>8.1%}  {(after - before) * 100:>+7.1f}pt")
    sys.stdout.flush()
