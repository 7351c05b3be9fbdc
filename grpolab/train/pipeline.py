"""The GRPO training script, read top to bottom: config, run directory, logging, tokenizer,
model, rewards, data, trainer, train, save, summary. TRL's GRPOTrainer does the training."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from grpolab.config import ConfigError, GRPOConfigLoader, Problem
from grpolab.config.derive import derived_quantities
from grpolab.config.loader import preset_dir
from grpolab.train.args import flags_from_args
from grpolab.train.rewards import RewardFunctionError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


def run_from_args(args) -> int:
    """Entry point for `python training/grpo_training.py` and `grpolab train`."""
    # Before torch loads: OpenMP's default spin-wait makes a busy machine 20x slower (see Makefile).
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")
    try:
        return train(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RewardFunctionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


# ------------------------------------------------------------------------- config
def resolve_config(args) -> GRPOConfigLoader:
    """The layered config. With no model anywhere (no --model, no --config), the embedded demo runs."""
    if args.resume:
        return resume_config(args)
    config_path = args.config
    if not args.model and not config_path and not any(o.startswith("model.name_or_path=") for o in args.overrides):
        config_path = str(preset_dir() / "grpo_demo.yaml")
        print(f"no --model given: running the embedded demo ({config_path})")
    return GRPOConfigLoader(
        mode=args.mode, config_path=config_path, overrides=args.overrides, flags=flags_from_args(args)
    )


def resume_config(args) -> GRPOConfigLoader:
    """A resumed run uses its own resolved config; a different one given now is refused unless --force."""
    run_dir = Path(args.resume)
    resolved = run_dir / "resolved_config.yaml"
    if not resolved.is_file():
        raise ConfigError(
            Problem(
                "",
                f"`{run_dir}` is not a run directory (no resolved_config.yaml).",
                "pass a folder created by a previous run",
                "--resume",
            )
        )
    saved = GRPOConfigLoader(config_path=resolved)
    if not (args.config or args.overrides or args.model or args.mode or args.output_dir):
        return saved
    requested = GRPOConfigLoader(
        mode=args.mode, config_path=args.config or resolved, overrides=args.overrides, flags=flags_from_args(args)
    )
    if args.force:
        return requested
    differ = _differences(saved.to_dict(), requested.to_dict())
    if differ:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in differ[:5])
        raise ConfigError(
            Problem(
                "",
                f"the config given differs from the run's ({shown}).",
                "drop --config/--set to resume as it was, or add --force to resume with the new values",
                "--resume",
            )
        )
    return saved


def _differences(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in dict.fromkeys([*a, *b]):
            out += _differences(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    return [] if a == b else [(prefix, a, b)]


def detect_hardware(cfg) -> dict:
    """What this process runs on, and the `auto` choices that follow from it (device, bf16,
    vLLM, Liger)."""
    import importlib.util as importlib_util

    import torch

    from grpolab.launch.detect import cpu_has_bf16

    cluster_cfg = cfg.cluster

    cuda = torch.cuda.is_available() and cluster_cfg.device != "cpu"
    if cluster_cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            Problem("cluster.device", "is cuda, but no CUDA GPU is visible.", "set `cluster.device: auto` (or cpu)")
        )
    use_vllm = cluster_cfg.use_vllm
    if use_vllm is True or use_vllm == "auto":
        have_vllm = importlib_util.find_spec("vllm") is not None
        if use_vllm is True and not (have_vllm and cuda):
            missing = "vLLM is not installed (pip install 'trl[vllm]')" if not have_vllm else "there is no CUDA GPU"
            raise ConfigError(
                Problem(
                    "cluster.use_vllm",
                    f"is true, but {missing}.",
                    "set `cluster.use_vllm: auto` to fall back to transformers generation",
                )
            )
        if use_vllm == "auto" and cuda and not have_vllm:
            print(
                "note: vLLM is not installed; generating with transformers (pip install "
                "'trl[vllm]' for faster generation)"
            )
        use_vllm = have_vllm and cuda
    liger_installed = importlib_util.find_spec("liger_kernel") is not None
    if cfg.training.use_liger_kernel is True and not (liger_installed and cuda):
        missing = (
            "liger-kernel is not installed (pip install liger-kernel)"
            if not liger_installed
            else "there is no CUDA GPU (Liger's kernels need one)"
        )
        raise ConfigError(
            Problem(
                "training.use_liger_kernel",
                f"is true, but {missing}.",
                "set `training.use_liger_kernel: auto` to use it only where it can run",
            )
        )
    return {
        "device": "cuda" if cuda else "cpu",
        "bf16_supported": bool(torch.cuda.is_bf16_supported())
        if cuda
        else cpu_has_bf16(),  # native bf16: autocast pays off
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "rank": int(os.environ.get("RANK", "0")),
        "use_vllm": bool(use_vllm),
        "liger": liger_installed and cuda,
    }


# ------------------------------------------------------------------------- the run
def train(args) -> int:
    loader = resolve_config(args)
    cfg = loader.config
    for warning in loader.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    os.environ.update(cfg.env)  # before torch/transformers read their variables
    if "mlflow" in cfg.logging.report_to:
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", cfg.logging.project)  # group runs like WandB's project

    from grpolab.track import run_dir as records

    hw = detect_hardware(cfg)
    if hw["device"] == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # deepspeed, when installed, warns on every import otherwise
    from grpolab.launch.relaunch import maybe_relaunch

    launched = maybe_relaunch(loader, args, hw)  # cluster mode: start the ranks through accelerate/torchrun
    if launched is not None:
        return launched
    world = hw["world_size"]
    trl_kwargs = loader.trl_kwargs(
        world_size=world,
        device=hw["device"],
        bf16_supported=hw["bf16_supported"],
        use_vllm=hw["use_vllm"],
        liger_installed=hw["liger"],
    )
    hw["use_liger_kernel"], hw["bf16"] = trl_kwargs["use_liger_kernel"], trl_kwargs["bf16"]
    import torch

    from grpolab.launch.detect import cpu_threads

    hw["threads"] = cpu_threads(
        cfg.cluster.threads_per_process, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    )  # ranks on this machine
    torch.set_num_threads(hw["threads"])

    # Logging: quiet libraries, our own lines on stdout.
    import transformers

    transformers.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()  # weight-loading bars; the training bar stays
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    transformers.set_seed(cfg.training.seed)

    # Tokenizer and model.
    from grpolab.train import model as models

    model_name = models.resolve_model_path(cfg.model)
    tokenizer = models.load_tokenizer(model_name, cfg.model)
    dtype = models.torch_dtype(cfg.model, hw["device"], hw["bf16_supported"])
    model = models.load_model(model_name, cfg.model, dtype)

    # Rewards.
    from grpolab.train.rewards import build_rewards

    reward_funcs, reward_needs = build_rewards(cfg.rewards, cfg.generation.max_completion_length)

    # Data: load, check columns, format prompts, drop prompts that do not fit the context.
    from grpolab.train import data as datas

    train_set = datas.load_split(cfg.data, cfg.data.split, cfg.data.max_samples, seed=cfg.training.seed)
    datas.check_columns(train_set, reward_needs)
    train_set = datas.format_prompts(train_set, tokenizer, cfg.data.system_prompt)
    context = models.context_length(model, tokenizer)
    train_set, dropped, longest = datas.drop_too_long(
        train_set, tokenizer, cfg.generation.max_completion_length, context
    )
    eval_rows = None
    if cfg.data.eval_split:
        eval_set = datas.load_split(cfg.data, cfg.data.eval_split, cfg.data.eval_samples, seed=cfg.training.seed + 1)
        if "answer" not in eval_set.column_names or not isinstance(eval_set[0]["prompt"], str):
            raise ConfigError(
                Problem(
                    "data.eval_split",
                    "held-out scoring needs string prompts and an `answer` column.",
                    "map them with `data.columns`, or set `data.eval_split: null`",
                )
            )
        eval_rows = eval_set.to_list()
    derived = derived_quantities(cfg, world, len(train_set))

    print_plan(cfg, loader, model_name, model, hw, derived, len(train_set), dropped, longest, context, eval_rows)
    if args.dry_run:
        print("dry run: config, model, tokenizer, rewards and data are valid; nothing was trained")
        return EXIT_OK

    # Run directory (rank 0 writes it; a launcher may have made it already).
    resumed = bool(args.resume)
    run_dir = Path(args.resume) if resumed else _run_dir(loader, args, records)
    checkpoint = _last_checkpoint(run_dir) if resumed else None  # before the run's records are touched
    is_main = hw["rank"] == 0
    if resumed and is_main:  # steps logged after the checkpoint (a hard kill) are trained again: drop their records
        records.drop_metrics_after(run_dir, int(Path(checkpoint).name.rpartition("-")[2]))
    info_path = run_dir / "run_info.json"
    info = _load_json(info_path) if resumed else {}
    if is_main:
        # A resumed run rewrites only resolved_config.yaml: the same text, unless --force changed values.
        sha = records.write_config_files(run_dir, loader.to_dict(), None if resumed else loader.overrides)
        info.update(
            {
                "run_name": run_dir.name,
                "command": sys.argv,
                "config_file": (str(loader.config_path) if loader.config_path else None)
                if not resumed
                else info.get("config_file"),
                "mode": cfg.mode,
                "model": model_name,
                "git": records.git_info(loader.config_path) if not resumed else info.get("git"),
                "packages": records.package_versions(),
                "host": records.host_info(),
                "world_size": world,
                "device": hw["device"],
                "threads_per_process": hw["threads"],
                "effective_batch_size": derived["effective_batch_size"],
                "derived": derived,
                "dataset": {"rows": len(train_set), "dropped_too_long": dropped},
                "config_sha256": sha,
                "status": "running",
                "pid": os.getpid(),  # lets `grpolab runs list` tell a crashed run from a live one
                "cwd": os.getcwd(),  # resolves a relative config_file for `grpolab runs annotate`
            }
        )
        info.setdefault("started", records.now())
        if resumed:
            info.setdefault("resumed", []).append(records.now())
        records.write_json(info_path, info)

    # Held-out accuracy before training.
    eval_before = _evaluate(model, tokenizer, eval_rows, cfg)

    # Trainer.
    from trl import GRPOConfig, GRPOTrainer

    from grpolab.track.wandb_run import start_wandb, wandb_enabled
    from grpolab.train.callbacks import (
        HeldOutAccuracyCallback,
        MetricsFileCallback,
        NanLossCallback,
        StopOnSignalCallback,
    )

    trl_kwargs.update(output_dir=str(run_dir), run_name=run_dir.name)
    wandb_run = None
    if is_main and wandb_enabled(cfg.logging.report_to):
        wandb_run = start_wandb(
            run_dir, cfg.logging, loader.to_dict(), derived, [run_dir / "resolved_config.yaml", loader.config_path]
        )
    elif not wandb_enabled(cfg.logging.report_to) and "wandb" in (trl_kwargs["report_to"] or []):
        trl_kwargs["report_to"] = [t for t in trl_kwargs["report_to"] if t != "wandb"] or "none"
    if is_main:  # the exact GRPOConfig arguments: a plain TRL script given these trains the same run
        info["trl_args"] = trl_kwargs
        records.write_json(info_path, info)
    nan_guard, stopper = NanLossCallback(), StopOnSignalCallback().install()
    callbacks = [MetricsFileCallback(run_dir / "metrics.jsonl"), nan_guard, stopper]
    if cfg.data.eval_every_steps:
        score = lambda m: _evaluate(m, tokenizer, eval_rows, cfg)  # noqa: E731
        callbacks.append(
            HeldOutAccuracyCallback(
                score, cfg.data.eval_every_steps, run_dir / "metrics.jsonl" if is_main else None, wandb_run
            )
        )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=GRPOConfig(**trl_kwargs),
        train_dataset=train_set,
        processing_class=tokenizer,
        peft_config=models.lora_config(cfg.model),
        callbacks=callbacks,
    )

    # Train.
    status, exit_code, error = "finished", EXIT_OK, None
    started = time.time()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except RewardFunctionError as exc:
        status, exit_code, error = "failed", EXIT_FAILED, str(exc)
    except KeyboardInterrupt:
        status, exit_code, error = "interrupted", EXIT_SIGNAL["SIGINT"], "aborted by a second Ctrl-C (no checkpoint)"
    except Exception as exc:  # anything else: record the failure, then show the real error
        if is_main:
            info.update(status="failed", ended=records.now(), error=f"{type(exc).__name__}: {exc}")
            records.write_json(info_path, info)
        raise
    finally:
        stopper.uninstall()
    if stopper.signal_name and status == "finished":
        status, exit_code, error = (
            "interrupted",
            EXIT_SIGNAL.get(stopper.signal_name, 1),
            f"{stopper.signal_name}: checkpoint saved at step {trainer.state.global_step}",
        )
    if nan_guard.nan_step is not None:
        status, exit_code, error = (
            "failed",
            EXIT_FAILED,
            f"training diverged (NaN) at step {nan_guard.nan_step}: {nan_guard.reason}; "
            f"stopped with a checkpoint (checkpoint-{nan_guard.nan_step}); lower "
            "training.learning_rate or check the rewards",
        )

    # Save the final model, score it again, write the summary.
    eval_after = None
    if status == "finished":
        _save_final_model(trainer, tokenizer, run_dir, is_main)
        eval_after = _evaluate(trainer.model, tokenizer, eval_rows, cfg)
    if is_main:
        summary = records.summarize(records.read_metrics(run_dir))
        summary.update(
            status=status, train_seconds=round(time.time() - started, 2), global_step=trainer.state.global_step
        )
        if eval_rows is not None:
            summary["eval"] = {
                "split": cfg.data.eval_split,
                "prompts": len(eval_rows),
                "accuracy_before": eval_before,
                "accuracy_after": eval_after,
            }
        records.write_json(run_dir / "summary.json", summary)
        info.update(
            status=status, ended=records.now(), exit_code=exit_code, global_step=trainer.state.global_step, error=error
        )
        records.write_json(info_path, info)
        print_result(run_dir, summary, status, error)
    if wandb_run is not None:
        wandb_run.summary.update(
            {
                "status": status,
                **({"eval/accuracy_before": eval_before, "eval/accuracy_after": eval_after} if eval_rows else {}),
            }
        )
        wandb_run.finish(exit_code=exit_code)
    return exit_code


def _run_dir(loader, args, records) -> Path:
    existing = os.environ.get("GRPOLAB_RUN_DIR")  # set by the cluster launcher for every rank
    if existing:
        return Path(existing)
    stem = loader.config_path.stem if loader.config_path else loader.preset_path.stem
    return records.create_run_dir(loader.config.output_dir, stem, args.run_name)


def _load_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text()) if path.exists() else {}


def _last_checkpoint(run_dir: Path) -> str:
    from transformers.trainer_utils import get_last_checkpoint

    checkpoint = get_last_checkpoint(str(run_dir))
    if checkpoint is None:
        raise ConfigError(
            Problem(
                "", f"`{run_dir}` has no checkpoint-N folder to resume from.", "start a new run instead", "--resume"
            )
        )
    return checkpoint


def _evaluate(model, tokenizer, rows, cfg):
    if rows is None:
        return None
    from grpolab.demo.addition import greedy_accuracy

    return greedy_accuracy(model, tokenizer, rows, max_new_tokens=cfg.generation.max_completion_length)


def _save_final_model(trainer, tokenizer, run_dir: Path, is_main: bool) -> None:
    """run_dir/model loads with AutoModelForCausalLM.from_pretrained; LoRA is merged (the adapter is
    kept in run_dir/adapter)."""
    model = trainer.model
    if (trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled) and not hasattr(model, "merge_and_unload"):
        # ZeRO-3 / FSDP shard the weights: every rank takes part in gathering them, rank 0 writes.
        trainer.save_model(str(run_dir / "model"))
        if is_main:
            tokenizer.save_pretrained(run_dir / "model")
        return
    if hasattr(model, "merge_and_unload"):
        if is_main:
            model.save_pretrained(run_dir / "adapter")
        model = model.merge_and_unload()
    trainer.accelerator.wait_for_everyone()
    if is_main:
        model.save_pretrained(run_dir / "model")
        tokenizer.save_pretrained(run_dir / "model")


# ------------------------------------------------------------------------- printing
def print_plan(cfg, loader, model_name, model, hw, d, rows, dropped, longest, context, eval_rows) -> None:
    params = sum(p.numel() for p in model.parameters())
    source = loader.config_path or loader.preset_path
    lines = [
        f"config       {source} (mode "
        f"{cfg.mode}){' + ' + ', '.join(f'{k}={v}' for k, v in loader.overrides.items()) if loader.overrides else ''}",
        f"model        {model_name} ({params / 1e6:.2f}M parameters, context "
        f"{context}){' + LoRA r=' + str(cfg.model.lora.r) if cfg.model.lora.enabled else ''}",
        f"device       {hw['device']} x {d['world_size']} process(es), {hw['threads']} "
        f"CPU thread(s) each; precision {'bf16 autocast' if hw['bf16'] else 'fp32'}; "
        f"generation {'vLLM ' + cfg.cluster.vllm_mode if hw['use_vllm'] else 'transformers'}; "
        f"gradient checkpointing {'on' if cfg.training.gradient_checkpointing else 'off'}; "
        f"Liger {'on' if hw['use_liger_kernel'] else 'off'}",
        f"data         {cfg.data.dataset} [{cfg.data.split}]: {rows} prompts ({dropped} "
        f"dropped as too long; longest kept {longest} tokens)",
        f"rewards      {', '.join(f'{r.name} x{r.weight:g}' for r in cfg.rewards)}",
        f"batch        effective {d['effective_batch_size']}; "
        f"{d['generation_batch_size']} completions = {d['unique_prompts_per_round']} "
        f"prompts x {cfg.grpo.num_generations} per round; "
        f"{'on' if d['on_policy'] else 'off'}-policy",
        f"steps        {d['total_optimizer_steps']} optimizer steps "
        f"({d['optimizer_steps_per_epoch']} per epoch); KL "
        + (
            f"on (beta {cfg.grpo.beta:g}, reference model loaded)"
            if d["kl_tracked"]
            else "off (beta 0: no reference model)"
        ),
    ]
    if eval_rows is not None:
        every = f", and every {cfg.data.eval_every_steps} steps" if cfg.data.eval_every_steps else ""
        lines.append(
            f"held-out     {len(eval_rows)} prompts from [{cfg.data.eval_split}], greedy "
            f"accuracy before and after{every}"
        )
    print("\n".join(lines), flush=True)


def print_result(run_dir: Path, summary: dict, status: str, error: str | None) -> None:
    final = summary["final"]
    print(f"\nrun {status}: {run_dir}")
    if error:
        print(f"  {error}")
    reward = final.get("reward")
    if reward is not None:
        print(
            f"  steps {summary['global_step']}, final reward {reward:.3f}, best "
            f"{summary['best'].get('reward', reward):.3f}, {summary['train_seconds']:.1f} s"
        )
    ev = summary.get("eval")
    if ev and ev["accuracy_before"] is not None:
        after = ev["accuracy_after"]
        print(f"\n  held-out accuracy ({ev['prompts']} prompts, greedy)")
        print(f"  {'before':>8}  {'after':>8}  {'change':>8}")
        if after is None:
            print(f"  {ev['accuracy_before']:>8.1%}  {'-':>8}  {'-':>8}")
        else:
            print(f"  {ev['accuracy_before']:>8.1%}  {after:>8.1%}  {(after - ev['accuracy_before']) * 100:>+7.1f}pt")
    sys.stdout.flush()
