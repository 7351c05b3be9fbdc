"""Build, briefly pretrain and cache the tiny character-level GPT-2 used by `make demo`. Nothing is
downloaded: it is pretrained on the addition train split only until it half-solves it (correct samples
to reinforce, room to improve), and cached outside the repository, keyed by a hash of recipe and code."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from grpolab.demo import addition

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
CHARS = "0123456789+= "

# Everything that shapes the built model. Changing any value (or the source of this module or of addition.py) changes
# the cache folder name, so the model is rebuilt.
RECIPE = {
    "n_layer": 3,
    "n_head": 4,
    "n_embd": 128,
    "n_positions": 32,
    "seed": 0,
    "batch_size": 128,
    "lr": 1e-3,
    "warmup_steps": 50,
    # Accuracy jumps from ~10% to ~100% within a couple of hundred steps, at a step that varies a lot with the
    # seed and even with float rounding (after a fixed 325 steps, seeds gave 19% to 99.7% held-out accuracy). So
    # instead of a fixed step count, training stops as soon as the greedy accuracy on a probe set of TRAIN
    # prompts reaches the target: the model half-solves the task on any machine, leaving room for GRPO.
    "target_accuracy": 0.35,
    "check_every": 10,
    "probe_rows": 512,
    "max_steps": 2000,
    "eval_rows": 500,
}

MARKER = "grpolab_demo.json"  # written last: its presence means the build finished
_STALE_TMP_SECONDS = 3600


def build_tokenizer():
    """Character-level tokenizer over digits, '+', '=' and space, with pad/eos/unk."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *CHARS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # one token per character
    tok.decoder = decoders.Fuse()  # join characters back without spaces
    # No post-processor: nothing (no BOS) is ever added, so the prompts TRL tokenizes look exactly like the
    # pretraining prompts. pad != eos, so padding is never mistaken for the end of an answer.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="left",
        model_max_length=RECIPE["n_positions"],
    )


def _source_digest() -> str:
    h = hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode())
    for module_file in (__file__, addition.__file__):
        h.update(Path(module_file).read_bytes().replace(b"\r\n", b"\n"))
    return h.hexdigest()[:12]


def default_cache_dir() -> Path:
    """`$GRPOLAB_CACHE` if set, else `~/.cache/grpolab`."""
    env = os.environ.get("GRPOLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "grpolab"


def demo_model_path(cache_dir: str | os.PathLike | None = None, *, quiet: bool = False) -> Path:
    """Directory holding the pretrained demo model and tokenizer (loadable offline), built on first use
    into a temporary sibling folder renamed into place only when complete: an interrupted or concurrent
    build never leaves a half-written model behind under the final name."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / f"demo-addition-{_source_digest()}"
    if (target / MARKER).is_file():
        return target

    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp_dirs(root, target.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
    if not quiet:
        print("building the demo model (first run only, ~30 s)...", end="", file=sys.stderr, flush=True)
    try:
        info = _build_with_two_threads(tmp)
        _publish(tmp, target)
    except BaseException:
        if not quiet:
            print(" failed", file=sys.stderr, flush=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # no-op once renamed into place
    if not quiet:
        message = f" done in {info['pretrain_seconds']:.0f} s (held-out accuracy {info['eval_accuracy']:.0%})"
        print(message, file=sys.stderr, flush=True)
    return target


def _publish(tmp: Path, target: Path) -> None:
    try:
        os.replace(tmp, target)  # atomic; fails if target exists and is not empty
        return
    except OSError:
        if (target / MARKER).is_file():
            return  # a concurrent build finished first; its model is equivalent
    # `target` exists but is incomplete (not written by this code): move it aside, then publish.
    stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=target.parent))
    os.replace(target, stale / "old")
    os.replace(tmp, target)
    shutil.rmtree(stale, ignore_errors=True)


def _remove_stale_tmp_dirs(root: Path, name: str) -> None:
    # Leftovers of builds that were killed (e.g. Ctrl-C twice, OOM) and never cleaned up.
    for path in list(root.glob(f".{name}.tmp-*")) + list(root.glob(f".{name}.stale-*")):
        try:
            if time.time() - path.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def _encode_train_split(tokenizer):
    """All train-split examples as `prompt answer <eos>`, right-padded, loss on the answer only."""
    import torch

    rows = addition.make_addition_rows(addition.split_size("train"), seed=0, split="train")
    prompts = [tokenizer(r["prompt"], add_special_tokens=False)["input_ids"] for r in rows]
    answers = [tokenizer(r["answer"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for r in rows]
    width = max(len(p) + len(a) for p, a in zip(prompts, answers))
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        n = len(p) + len(a)
        input_ids[i, :n] = torch.tensor(p + a)
        labels[i, len(p) : n] = torch.tensor(a)  # the prompt is random: nothing to learn there
        attention_mask[i, :n] = 1
    return input_ids, attention_mask, labels


def _build_with_two_threads(out_dir: Path) -> dict:
    import torch
    from transformers.utils import logging as hf_logging

    # Always 2 threads, the demo's budget: the thread count changes float rounding, hence the training
    # trajectory, so fixing it keeps builds reproducible. (More threads barely help a model this small. On a busy
    # machine OpenMP spin-waiting can make even 2 threads many times slower, unless GOMP_SPINCOUNT=1000 is set
    # before torch is imported.) transformers' one-off warnings and save progress bar would break the one-line
    # progress message. All three settings are restored for the rest of the process.
    threads, verbosity = torch.get_num_threads(), hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    torch.set_num_threads(2)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return _build(out_dir)
    finally:
        torch.set_num_threads(threads)
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _build(out_dir: Path) -> dict:
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(RECIPE["seed"])
    tokenizer = build_tokenizer()
    special = {
        "bos_token_id": tokenizer.eos_token_id,  # GPT-2 convention; never actually prepended
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    shape = {key: RECIPE[key] for key in ("n_positions", "n_embd", "n_layer", "n_head")}
    # No dropout: GRPO compares log-probs across passes, which dropout would make noisy.
    no_dropout = dict.fromkeys(("resid_pdrop", "embd_pdrop", "attn_pdrop"), 0.0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), **shape, **no_dropout, **special))
    model.generation_config = GenerationConfig(**special)

    input_ids, attention_mask, labels = _encode_train_split(tokenizer)
    gen = torch.Generator().manual_seed(RECIPE["seed"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"], weight_decay=0.0)
    # Linear warmup, then constant: the stopping point is decided by accuracy, not by a schedule.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / RECIPE["warmup_steps"])
    )
    probe_rows = addition.make_addition_rows(RECIPE["probe_rows"], seed=1, split="train")
    probe_accuracy = 0.0
    start = time.perf_counter()
    model.train()
    step = 0
    while step < RECIPE["max_steps"] and probe_accuracy < RECIPE["target_accuracy"]:
        idx = torch.randint(0, len(input_ids), (RECIPE["batch_size"],), generator=gen)
        loss = model(input_ids=input_ids[idx], attention_mask=attention_mask[idx], labels=labels[idx]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if step % RECIPE["check_every"] == 0:
            probe_accuracy = addition.greedy_accuracy(model, tokenizer, probe_rows, max_new_tokens=4, batch_size=512)
    pretrain_seconds = round(time.perf_counter() - start, 1)
    eval_rows = addition.make_addition_rows(RECIPE["eval_rows"], seed=0, split="eval")
    info = {
        "recipe": RECIPE,
        "parameters": sum(p.numel() for p in model.parameters()),
        "pretrain_seconds": pretrain_seconds,
        "pretrain_steps": step,
        "final_loss": round(loss.item(), 4),
        "probe_accuracy": probe_accuracy,
        "eval_rows": len(eval_rows),
        "eval_accuracy": addition.greedy_accuracy(model, tokenizer, eval_rows),
    }
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / MARKER).write_text(json.dumps(info, indent=2) + "\n")
    return info
