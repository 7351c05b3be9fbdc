"""The trainer stage: TRL's GRPOTrainer built from the resolved config, trained, and the run
finished: final model, held-out score after training, summary.json and the record's end."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from grpolab.train.recording import Run
from grpolab.train.rewards import RewardFunctionError

EXIT_OK, EXIT_FAILED = 0, 1
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


@dataclass
class Guards:
    nan: object
    stopper: object
    scorer: object  # held-out scoring, or None


@dataclass
class TrainingArgs:
    args: object  # trl.GRPOConfig
    kwargs: dict  # the exact GRPOConfig arguments, recorded in run_info.json as trl_args


def training_args(cfg, resolved) -> TrainingArgs:
    """GRPOConfig, built before the policy loads: under ZeRO-3 its DeepSpeed config makes
    from_pretrained load the weights already partitioned (zero.Init) instead of a full copy per
    rank. The run directory is filled in once it exists (`build_trainer`)."""
    from trl import GRPOConfig

    from grpolab.config.trl_mapping import to_trl_kwargs
    from grpolab.run.wandb_run import wandb_enabled

    kwargs = to_trl_kwargs(cfg, resolved)
    if not wandb_enabled(cfg.logging.report_to) and "wandb" in (kwargs["report_to"] or []):
        kwargs["report_to"] = [t for t in kwargs["report_to"] if t != "wandb"] or "none"
    return TrainingArgs(GRPOConfig(**kwargs), kwargs)


def build_trainer(run: Run, training: TrainingArgs, model, tokenizer, reward_funcs, data):
    from trl import GRPOTrainer

    from grpolab.run.wandb_run import start_wandb, wandb_enabled
    from grpolab.train.callbacks import (
        HeldOutAccuracyCallback,
        MetricsFileCallback,
        NanLossCallback,
        StopOnSignalCallback,
    )
    from grpolab.train.evaluate import HeldOutScorer
    from grpolab.train.model import lora_config
    from grpolab.train.tools import load_agent

    cfg = run.loader.config
    training.args.output_dir, training.args.run_name = str(run.dir), run.dir.name
    training.kwargs.update(output_dir=str(run.dir), run_name=run.dir.name)
    if run.is_main and wandb_enabled(cfg.logging.report_to):
        files = [run.dir / "resolved_config.yaml", run.loader.config_path]
        previous = run.info.extra.get("wandb_id")  # a resumed run continues its WandB run
        run.wandb_run = start_wandb(run.dir, cfg.logging, run.loader.to_dict(), run.derived, files, previous)
        run.save_info(wandb_id=run.wandb_run.id)
    # The exact GRPOConfig arguments: a plain TRL script given these trains the same run.
    run.save_info(trl_args=training.kwargs)

    scorer = HeldOutScorer(data.eval_rows, tokenizer, cfg.generation.max_completion_length) if data.eval_rows else None
    guards = Guards(NanLossCallback(), StopOnSignalCallback().install(), scorer)
    callbacks = [MetricsFileCallback(run.dir), guards.nan, guards.stopper]
    if scorer and cfg.data.eval_every_steps:
        where = run.dir if run.is_main else None
        callbacks.append(HeldOutAccuracyCallback(scorer, cfg.data.eval_every_steps, where, run.wandb_run))
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=training.args,
        train_dataset=data.train_set,
        processing_class=tokenizer,
        peft_config=lora_config(cfg.model),
        callbacks=callbacks,
        **load_agent(cfg, tokenizer).trainer_kwargs(),  # tools, environment_factory, rollout_func from the config
    )
    run.eval_before = scorer(trainer.model) if scorer else None  # on the trainer's device, not the CPU
    return trainer, guards


@dataclass
class Outcome:
    status: str  # finished, interrupted or failed
    exit_code: int
    error: str | None
    seconds: float


def fit(trainer, guards: Guards, checkpoint: str | None) -> Outcome:
    """trainer.train, and how it ended: a reward error, Ctrl-C, SIGTERM or NaN stop it cleanly."""
    status, exit_code, error = "finished", EXIT_OK, None
    started = time.time()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except RewardFunctionError as exc:
        status, exit_code, error = "failed", EXIT_FAILED, str(exc)
    except KeyboardInterrupt:
        status, exit_code, error = "interrupted", EXIT_SIGNAL["SIGINT"], "aborted by a second Ctrl-C (no checkpoint)"
    finally:
        guards.stopper.uninstall()
    stopper, nan = guards.stopper, guards.nan
    if stopper.signal_name and status == "finished":
        status, exit_code = "interrupted", EXIT_SIGNAL.get(stopper.signal_name, 1)
        error = f"{stopper.signal_name}: checkpoint saved at step {trainer.state.global_step}"
    if nan.nan_step is not None:
        status, exit_code = "failed", EXIT_FAILED
        error = (
            f"training diverged (NaN) at step {nan.nan_step}: {nan.reason}; stopped with a checkpoint "
            f"(checkpoint-{nan.nan_step}); lower training.learning_rate or check the rewards"
        )
    return Outcome(status, exit_code, error, round(time.time() - started, 2))


def finish(run: Run, trainer, tokenizer, guards: Guards, outcome: Outcome) -> None:
    """Save the final model and score it again (finished runs), then the summary and the record."""
    from grpolab.run import metrics
    from grpolab.run.record import now
    from grpolab.train import report

    cfg = run.loader.config
    eval_after = None
    if outcome.status == "finished":
        save_final_model(trainer, tokenizer, run.dir, run.is_main, run.model_name, cfg.model)
        eval_after = guards.scorer(trainer.model) if guards.scorer else None
    step = trainer.state.global_step
    if run.is_main:
        summary = metrics.summarize(metrics.read(run.dir))
        summary.update(status=outcome.status, train_seconds=outcome.seconds, global_step=step)
        if guards.scorer:
            summary.eval = {
                "split": cfg.data.eval_split,
                "prompts": len(run.data.eval_rows),
                "accuracy_before": run.eval_before,
                "accuracy_after": eval_after,
            }
        summary.save(run.dir)
        run.save_info(
            status=outcome.status, ended=now(), exit_code=outcome.exit_code, global_step=step, error=outcome.error
        )
        if outcome.status == "failed" and run.dist.launcher is not None:  # the launcher reports it once
            from grpolab.run.run_dir import record_rank_error

            record_rank_error(run.dir, run.dist.rank, outcome.exit_code, outcome.error)
        report.print_result(run.dir, summary, outcome.error)
    if run.wandb_run is not None:
        scores = {"eval/accuracy_before": run.eval_before, "eval/accuracy_after": eval_after} if guards.scorer else {}
        run.wandb_run.summary.update({"status": outcome.status, **scores})
        run.wandb_run.finish(exit_code=outcome.exit_code)
        run.wandb_run = None
    run.exit_code = outcome.exit_code


def save_final_model(trainer, tokenizer, run_dir: Path, is_main: bool, base_model: str, model_cfg) -> None:
    """run_dir/model loads with AutoModelForCausalLM.from_pretrained; LoRA is merged (the adapter is
    kept in run_dir/adapter)."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    model = trainer.model
    lora = hasattr(model, "merge_and_unload")
    if lora and is_deepspeed_zero3_enabled():
        # ZeRO-3 parameters are empty placeholders on every rank: the adapter is gathered by the
        # collective save, then merged into a fresh copy of the base model on rank 0.
        trainer.save_model(str(run_dir / "adapter"))
        if is_main:
            merge_adapter(base_model, model_cfg, run_dir / "adapter", run_dir / "model")
            tokenizer.save_pretrained(run_dir / "model")
        trainer.accelerator.wait_for_everyone()
        return
    if (trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled) and not lora:
        # ZeRO-3 / FSDP shard the weights: every rank takes part in gathering them, rank 0 writes.
        trainer.save_model(str(run_dir / "model"))
        if is_main:
            tokenizer.save_pretrained(run_dir / "model")
        return
    if lora:
        if is_main:
            model.save_pretrained(run_dir / "adapter")
        model = model.merge_and_unload()
    trainer.accelerator.wait_for_everyone()
    if is_main:
        model.save_pretrained(run_dir / "model")
        tokenizer.save_pretrained(run_dir / "model")


def merge_adapter(base_model: str, model_cfg, adapter: Path, out: Path) -> None:
    """base + LoRA adapter -> one model folder, on the CPU of this process."""
    from peft import PeftModel

    from grpolab.train.model import load_model

    merged = PeftModel.from_pretrained(load_model(base_model, model_cfg, "float32"), str(adapter)).merge_and_unload()
    merged.save_pretrained(out)
