"""The trainer stage: TRL's GRPOTrainer built from the resolved config, trained, and the run
finished: final model, held-out score after training, summary.json and the record's end."""

from __future__ import annotations

import re
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from grpolab.guard.watch import Watcher
from grpolab.rewards.errors import RewardFunctionError
from grpolab.run import metrics
from grpolab.run.exit_codes import EXIT_FAILED, EXIT_GUARD_STOP, EXIT_OK, EXIT_SIGNAL
from grpolab.run.record import now
from grpolab.run.run_dir import record_rank_error, write_failed
from grpolab.run.wandb_run import start_wandb, wandb_enabled
from grpolab.runtime.trl_args import to_trl_kwargs
from grpolab.train import callbacks as cbs
from grpolab.train import report
from grpolab.train.evaluate import best_of, make_evaluator
from grpolab.train.guard import GuardCallback
from grpolab.train.model import load_model, lora_config
from grpolab.train.recording import Run


@dataclass
class Guards:
    nan: object
    stopper: object
    evaluation: object  # the EvalCallback, or None without held-out prompts
    live: object = None  # the GuardCallback (`guard:`: the doctor's rules live, and the forecast)


@dataclass
class TrainingArgs:
    args: object  # trl.GRPOConfig
    kwargs: dict  # the exact GRPOConfig arguments, recorded in run_info.json as trl_args


def training_args(cfg, resolved) -> TrainingArgs:
    """GRPOConfig, built before the policy loads: under ZeRO-3 its DeepSpeed config makes
    from_pretrained load the weights already partitioned (zero.Init) instead of a full copy per
    rank. The run directory is filled in once it exists (`build_trainer`)."""
    from trl import GRPOConfig

    kwargs = to_trl_kwargs(cfg, resolved)
    if not wandb_enabled(cfg.logging.report_to) and "wandb" in (kwargs["report_to"] or []):
        kwargs["report_to"] = [t for t in kwargs["report_to"] if t != "wandb"] or "none"
    return TrainingArgs(GRPOConfig(**kwargs), kwargs)


def build_trainer(run: Run, training: TrainingArgs, model, tokenizer, reward_funcs, data, agent):
    from trl import GRPOTrainer

    cfg = run.loader.config
    training.args.output_dir, training.args.run_name = str(run.dir), run.dir.name
    training.kwargs.update(output_dir=str(run.dir), run_name=run.dir.name)
    if run.is_main and wandb_enabled(cfg.logging.report_to):
        files = [run.dir / "resolved_config.yaml", run.loader.config_path]
        previous = run.info.extra.get("wandb_id")  # a resumed run continues its WandB run
        run.wandb_run = start_wandb(run.dir, cfg.logging, run.loader.to_dict(), run.derived.to_dict(), files, previous)
        run.save_info(wandb_id=run.wandb_run.id)
    # The exact GRPOConfig arguments: a plain TRL script given these trains the same run. Whether
    # ZeRO-3 loaded the policy already partitioned (its parameters carry DeepSpeed ids) is recorded.
    partitioned = any(hasattr(p, "ds_id") for p in model.parameters())
    run.save_info(trl_args=training.kwargs, policy_partitioned_at_load=partitioned)

    e, evaluation, completions = cfg.eval, None, None
    if data.eval_rows:
        evaluator = make_evaluator(cfg, data.eval_rows, tokenizer, reward_funcs)
        evaluation = cbs.EvalCallback(evaluator, e.every_steps, run.dir, run.wandb_run, goals=e)
    guards = Guards(cbs.NanLossCallback(), cbs.StopOnSignalCallback().install(), evaluation)
    guards.live = live_guard(run, evaluation)
    if (keep := cfg.logging.save_completions) is not None and run.is_main:
        max_len = cfg.generation.max_completion_length
        completions = cbs.CompletionsCallback(run.dir, keep.every_steps, keep.max_per_step, tokenizer, max_len)
    # The live guard comes before evaluation, so a step's time is taken before any held-out scoring.
    optional = [guards.live, evaluation, cbs.ResumedScheduleCallback() if run.checkpoint else None, completions]
    callbacks = [cbs.MetricsFileCallback(run.dir), guards.nan, guards.stopper, *(c for c in optional if c is not None)]
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=training.args,
        train_dataset=data.train_set,
        processing_class=tokenizer,
        peft_config=lora_config(cfg.model),
        callbacks=callbacks,
        **agent.trainer_kwargs(),  # tools, environment_factory, rollout_func from the config
    )
    if guards.live is not None:  # first in line: the findings it adds to a step's logs reach every tracker
        trainer.callback_handler.callbacks.insert(0, trainer.pop_callback(guards.live))
    save = trainer._save_checkpoint

    def save_whole(model, trial=None):  # a checkpoint is whole, or not there
        with whole_or_removed(run, run.dir / f"checkpoint-{trainer.state.global_step}"):
            save(model, trial)

    trainer._save_checkpoint = save_whole
    if completions is not None:
        completions.trainer = trainer
    if evaluation is not None:
        evaluation.save = lambda model, folder: save_final_model(
            trainer, tokenizer, folder, run.is_main, run.model_name, cfg.model, adapter=folder / "adapter"
        )
        if e.before_training:  # on the trainer's device, not the CPU
            run.eval_before = evaluation.evaluate(trainer.model)
            evaluation.record(trainer.state.global_step, run.eval_before, None, run.is_main, trainer.model)
    return trainer, guards


def live_guard(run: Run, evaluation):
    """The GuardCallback for `guard:` (None when every kind is off and there is no forecast)."""
    g = run.loader.config.guard
    watching = any(action != "off" for action in g.kinds.values())
    if not watching and not g.forecast_after:
        return None
    curve = (lambda: evaluation.curve) if evaluation is not None else None
    watcher = Watcher(g, run.dir, run.loader, run.resolved.world_size, extra_rows=curve) if watching else None
    if watcher is not None and run.checkpoint and run.is_main:  # a resumed run: read once, then kept in memory
        watcher.rows = [r for r in metrics.read(run.dir) if "guard" not in r and "eval/train_seconds" not in r]
    scoring = (lambda: evaluation.scoring_seconds) if evaluation is not None else (lambda: 0.0)
    on_gpu = run.resolved.device == "cuda"
    return GuardCallback(
        watcher, g.forecast_after, run.dir, run.is_main, on_gpu, run.save_info, run.wandb_run, scoring
    )


@dataclass
class Outcome:
    status: str  # finished, interrupted or failed
    exit_code: int
    error: str | None
    seconds: float


def fit(trainer, guards: Guards, checkpoint: str | None) -> Outcome:
    """trainer.train, and how it ended: a reward error, Ctrl-C, SIGTERM or NaN stop it cleanly."""
    status, exit_code, error, started = "finished", EXIT_OK, None, time.time()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except RewardFunctionError as exc:
        status, exit_code, error = "failed", EXIT_FAILED, str(exc)
    except KeyboardInterrupt:
        status, exit_code, error = "interrupted", EXIT_SIGNAL["SIGINT"], "aborted by a second Ctrl-C (no checkpoint)"
    except RuntimeError as exc:
        if "probability tensor contains" not in str(exc):  # torch.multinomial refusing inf/NaN probabilities
            raise
        # Weights grown huge but still finite pass the NaN guard; the logits then overflow and
        # sampling refuses them. One process saves the checkpoint here; across ranks a save is
        # collective and the other ranks may still be sampling, so the last saved one stands.
        saved = trainer.accelerator.num_processes == 1
        if saved:
            trainer._save_checkpoint(trainer.model, trial=None)
        reason = "sampling met inf/NaN probabilities (the logits overflowed)"
        guards.nan.diverged(trainer.state.global_step, reason, checkpoint_saved=saved)
    finally:
        guards.stopper.uninstall()
    stopper, nan, live, step = guards.stopper, guards.nan, guards.live, trainer.state.global_step
    if stopper.signal_name and status == "finished":
        status, exit_code = "interrupted", EXIT_SIGNAL.get(stopper.signal_name, 1)
        error = f"{stopper.signal_name}: checkpoint saved at step {step}"
    if live is not None and live.stopped_at is not None and status == "finished" and nan.nan_step is None:
        status, exit_code, error = "stopped", EXIT_GUARD_STOP, live_stop_reason(live, step)
    if nan.nan_step is not None:
        status, exit_code = "failed", EXIT_FAILED
        checkpoint = "stopped; the last checkpoint saved before it stands"
        if nan.checkpoint_saved:
            checkpoint = f"stopped with a checkpoint (checkpoint-{nan.nan_step})"
        error = (
            f"training diverged (NaN) at step {nan.nan_step}: {nan.reason}; {checkpoint}; "
            "lower training.learning_rate or check the rewards"
        )
    return Outcome(status, exit_code, error, round(time.time() - started, 2))


def live_stop_reason(live, step: int) -> str:
    """One line for run_info.json's `error`, `runs list` and the end of the log."""
    v = live.stopped
    if v is None:  # not rank 0: the reason is rank 0's to record
        return f"stopped by the guard at step {step}; checkpoint-{step} saved"
    edit = f"; next: {' '.join(v.finding.set_lines())}" if v.finding.edits else ""
    return f"stopped by the guard at step {v.step}: {v.kind}: {v.finding.title}; checkpoint-{step} saved{edit}"


def finish(run: Run, trainer, tokenizer, guards: Guards, outcome: Outcome) -> None:
    """Save the final model and score it again (finished runs), then the summary and the record."""
    cfg = run.loader.config
    evaluation, step, eval_after = guards.evaluation, trainer.state.global_step, None
    if outcome.status == "finished":
        with whole_or_removed(run, run.dir / "model"):
            save_final_model(trainer, tokenizer, run.dir / "model", run.is_main, run.model_name, cfg.model)
        if evaluation is not None:
            last = evaluation.curve[-1] if evaluation.curve else {}
            if last.get("step") == step and step > 0:  # the last evaluation point was this very model
                eval_after = {k: v for k, v in last.items() if k.startswith("eval/") and k != "eval/train_seconds"}
            else:
                eval_after = evaluation.evaluate(trainer.model)
                evaluation.record(step, eval_after, None, run.is_main, trainer.model)
    if run.is_main:
        summary = metrics.summarize(metrics.read(run.dir))
        live = guards.live.outcome() if guards.live is not None else {}
        summary.update(status=outcome.status, train_seconds=outcome.seconds, global_step=step, **live)
        if evaluation is not None:
            before, after = run.eval_before or {}, eval_after or {}
            summary.eval = {
                "split": cfg.eval.split or ("test_size" if cfg.data.test_size else None),
                "prompts": len(run.data.eval_rows),
                "dropped_too_long": run.data.eval_dropped,
                "before": run.eval_before,
                "after": eval_after,
                "best": best_of(evaluation.curve),
                "best_model": evaluation.finish_best(),
                "stopped_early": evaluation.stopped,
                "seconds": round(evaluation.evaluate.seconds, 2),
                "accuracy_before": before.get("eval/accuracy"),
                "accuracy_after": after.get("eval/accuracy"),
            }
        summary.save(run.dir)
        ending = {"status": outcome.status, "exit_code": outcome.exit_code, "error": outcome.error}
        run.save_info(**ending, ended=now(), global_step=step, **live)
        report.print_result(run.dir, summary, outcome.error)
    if outcome.status == "failed" and run.dist.launcher is not None:  # any rank: the launcher reports the first
        record_rank_error(run.dir, run.dist.rank, outcome.exit_code, outcome.error)
        if not run.is_main:  # into this rank's own log (rank 0's result is printed above)
            print(f"error (rank {run.dist.rank}): {outcome.error}", file=sys.stderr)
    if run.wandb_run is not None:
        scores = {f"{k}_before": v for k, v in (run.eval_before or {}).items()}
        scores |= {f"{k}_after": v for k, v in (eval_after or {}).items()}
        run.wandb_run.summary.update({"status": outcome.status, **scores})
        run.wandb_run.finish(exit_code=outcome.exit_code)
        run.wandb_run = None
    run.exit_code = outcome.exit_code


# How torch's and safetensors' writers say that a write failed (a full disk ends in torch's
# "unexpected pos 86656 vs 86548", not in an OSError).
WRITE_ERROR = re.compile(r"unexpected pos|write failed|PytorchStreamWriter|No space|StorageFull|quota|IoError")


@contextmanager
def whole_or_removed(run: Run, folder: Path):
    """A save into `folder` that fails removes what it wrote (a new folder only), so no half-written
    checkpoint or model looks complete and `--resume` takes the last whole one; a failed write
    becomes WriteFailed, naming the disk and the room a checkpoint needs."""
    existed = folder.exists()
    try:
        yield
    except Exception as exc:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, OSError) or WRITE_ERROR.search(str(exc)):
            raise write_failed(exc, run.dir, run.checkpoint_bytes, folder) from None
        raise


def save_final_model(
    trainer, tokenizer, out: Path, is_main: bool, base_model: str, model_cfg, adapter: Path | None = None
) -> None:
    """`out` (run_dir/model, or a best model) loads with AutoModelForCausalLM.from_pretrained.
    Every rank calls it: under ZeRO-3 / FSDP the save gathers the shards, and rank 0 writes."""
    if hasattr(trainer.model, "merge_and_unload"):
        # LoRA: the adapter (kept in `adapter`, default run_dir/adapter), merged into a fresh copy
        # of the base model on rank 0. ZeRO-3 ranks hold only placeholders, and the model being
        # trained stays unmerged (a best model is saved mid-training).
        adapter = adapter or out.parent / "adapter"
        trainer.save_model(str(adapter))
        if is_main:
            merge_adapter(base_model, model_cfg, adapter, out)
            tokenizer.save_pretrained(out)
        trainer.accelerator.wait_for_everyone()
        return
    trainer.save_model(str(out))
    if is_main:
        tokenizer.save_pretrained(out)


def merge_adapter(base_model: str, model_cfg, adapter: Path, out: Path) -> None:
    """base + LoRA adapter -> one model folder, on the CPU of this process. Under ZeRO-3 the base
    is loaded whole: while the DeepSpeed config is registered, from_pretrained would partition it."""
    from peft import PeftModel
    from transformers.integrations import deepspeed as hf_deepspeed

    registered = hf_deepspeed._hf_deepspeed_config_weak_ref  # set by accelerate's DeepSpeed plugin
    hf_deepspeed._hf_deepspeed_config_weak_ref = None
    try:
        merged = PeftModel.from_pretrained(load_model(base_model, model_cfg, "float32"), str(adapter))
        merged.merge_and_unload().save_pretrained(out)
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = registered
