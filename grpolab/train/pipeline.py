"""The GRPO training script, read top to bottom: config, where it runs, tokenizer and model,
rewards, data, plan, run directory, trainer, train, save, summary. TRL's GRPOTrainer trains."""

from __future__ import annotations

import os
import sys

from grpolab.config import ConfigError
from grpolab.config.derive import derive
from grpolab.rewards.errors import RewardFunctionError
from grpolab.run import run_dir as run_dirs
from grpolab.run.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from grpolab.run.rank_logs import send_output_to_log
from grpolab.run.run_dir import WriteFailed, check_writable, write_failed
from grpolab.runtime.dist import detect
from grpolab.train.request import TrainRequest


def run_from_args(args) -> int:
    """Entry point for `python training/grpo_training.py` and `grpolab train`."""
    # Before torch loads: OpenMP's default spin-wait makes a busy machine 20x slower (see Makefile).
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")
    # A rank other than 0 of a launch grpolab started writes to RUN_DIR/logs/rankN.log, not the
    # console: the plan and every warning print once (rank 0's), and nothing of the rank is lost.
    dist, handed = detect(), run_dirs.handed_over_run_dir()
    if dist.launcher is not None and not dist.is_main and handed is not None:
        send_output_to_log(handed, dist.rank)
    try:
        return train(TrainRequest.from_args(args))
    except ConfigError as exc:
        return _fail(EXIT_USAGE, str(exc))
    except RewardFunctionError as exc:
        return _fail(EXIT_FAILED, str(exc))


def _fail(code: int, message: str) -> int:
    """Print the error; a rank of a launch also records it for the launcher to report once."""
    print(f"error: {message}", file=sys.stderr)
    dist, handed = detect(), run_dirs.handed_over_run_dir()
    if dist.launcher is not None and handed is not None and handed.is_dir():
        run_dirs.record_rank_error(handed, dist.rank, code, message)
    return code


def train(request: TrainRequest) -> int:
    from grpolab.launch.decide import decide
    from grpolab.launch.execute import execute, print_launch
    from grpolab.train import report, resume, setup

    if request.resume:
        request = resume.prepare(request)
    loader = setup.load_config(request)  # a bad config ends here, before torch/transformers/trl load
    cfg = loader.config
    setup.apply_environment(cfg)
    dist = setup.join_distributed(cfg)
    resolved = setup.resolve_runtime(cfg, dist)
    if request.resume:
        resume.check_resumable(request, resolved)
        done = resume.finished(request, loader)
        if done:  # before any launch, model or record: a finished run stays as it is
            print(done)
            return EXIT_OK
    step = decide(loader, request, resolved, dist)
    if step.kind == "show":
        print_launch(step.launch) if step.launch else print(step.message)
        return EXIT_OK
    if step.kind == "launch":  # after the --dry-run checks, once, before any rank starts
        return execute(step.launch, preflight=lambda: setup.preflight(cfg))
    setup.prepare_process(cfg, resolved)
    from grpolab.rewards.build import build_rewards
    from grpolab.train import model as models
    from grpolab.train.preview import dry_run_checks
    from grpolab.train.recording import open_run
    from grpolab.train.tools import load_agent
    from grpolab.train.trainer import build_trainer, finish, fit, training_args

    model_name = setup.model_path(cfg)
    # Where the run will write, and room there for a checkpoint, before the model loads (and in --dry-run).
    folder, key = (request.resume, "--resume") if request.resume else (cfg.output_dir, "output_dir")
    needed = setup.checkpoint_bytes(cfg, model_name)
    check_writable(folder, key, needed)
    models.check_model_options(cfg, model_name)
    tokenizer = models.load_tokenizer(model_name, cfg.model)
    training = training_args(cfg, resolved)  # before the policy loads: ZeRO-3 loads it partitioned
    model = models.load_model(model_name, cfg.model, resolved.model_dtype)
    if needed is None:  # a Hub model fetched just now: its size is known once it has loaded
        needed = setup.checkpoint_bytes(cfg, str(sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())))
        check_writable(folder, key, needed)
    reward_funcs, reward_needs = build_rewards(cfg.rewards, cfg.generation.max_completion_length)
    agent = load_agent(cfg, tokenizer)  # tools, environment, rollout: imported and checked
    data = setup.training_data(cfg, tokenizer, model, reward_needs)
    derived = derive(cfg, resolved.world_size, len(data.train_set))
    report.print_plan(loader, model_name, model, resolved, derived, data, request.dry_run)
    if request.dry_run:
        dry_run_checks(cfg, model, tokenizer, reward_funcs, data)  # tools + one sampled batch scored
        print("dry run: config, model, tokenizer, rewards and data are valid; nothing was trained")
        return EXIT_OK

    try:
        run = open_run(loader, request, resolved, dist, step.shared_run_dir, model_name, derived, data)
        run.checkpoint_bytes = needed
        with run.recording():  # a failed write is recorded there and raised as WriteFailed
            trainer, guards = build_trainer(run, training, model, tokenizer, reward_funcs, data, agent)
            outcome = fit(trainer, guards, run.checkpoint)
            finish(run, trainer, tokenizer, guards, outcome)
    except (OSError, WriteFailed) as exc:
        print(file=sys.stderr)  # ends the progress bar's line: the error is a line of its own
        return _fail(EXIT_FAILED, str(write_failed(exc, folder, needed)))
    return run.exit_code
