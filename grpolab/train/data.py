"""Training data: built-in synthetic tasks, Hub datasets, or local JSONL/JSON/CSV/Parquet files,
mapped onto a `prompt` column plus whatever columns the rewards read."""

from __future__ import annotations

from pathlib import Path

from grpolab.config import ConfigError, Problem

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
BUILTIN_TASKS = ("addition",)


def load_split(data_cfg, split: str, n_rows: int | None, seed: int):
    """One split of the configured dataset as a datasets.Dataset, columns renamed."""
    import datasets

    source = data_cfg.dataset
    if source.startswith("builtin:"):
        name = source.partition(":")[2]
        if name not in BUILTIN_TASKS:
            raise ConfigError(
                Problem(
                    "data.dataset",
                    f"unknown built-in task `{name}`; available: {', '.join(BUILTIN_TASKS)}.",
                    "set `data.dataset: builtin:addition`",
                )
            )
        from grpolab.demo.addition import make_addition_rows, split_size

        if split not in ("train", "eval"):
            raise ConfigError(
                Problem(
                    "data.split" if split == data_cfg.split else "data.eval_split",
                    f"built-in tasks have the splits train and eval, not `{split}`.",
                    None,
                )
            )
        rows = make_addition_rows(min(n_rows or split_size(split), split_size(split)), seed=seed, split=split)
        dataset = datasets.Dataset.from_list(rows)
    elif Path(source).suffix.lower() in LOCAL_FORMATS or Path(source).is_file():
        dataset = _load_local(source, split, data_cfg)
    else:
        # A Hub id, or a local folder laid out like a Hub dataset repo (same loading code).
        dataset = _load_hub(source, data_cfg.config_name, split)
    dataset = _rename(dataset, data_cfg.columns)
    if n_rows is not None and len(dataset) > n_rows:
        dataset = dataset.select(range(n_rows))
    return dataset


def _load_local(source: str, split: str, data_cfg):
    """A local file; for `eval_split` a second file path may be given."""
    import datasets

    path = Path(split) if split != data_cfg.split and Path(split).suffix.lower() in LOCAL_FORMATS else Path(source)
    if not path.is_file():
        raise ConfigError(
            Problem("data.dataset", f"data file `{path}` not found.", "give a path relative to the current directory")
        )
    builder = LOCAL_FORMATS.get(path.suffix.lower())
    if builder is None:
        raise ConfigError(
            Problem(
                "data.dataset",
                f"`{path.suffix}` files are not supported; use one of {', '.join(LOCAL_FORMATS)}.",
                None,
            )
        )
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:
        raise ConfigError(
            Problem(
                "data.dataset",
                f"could not read `{path}` as {builder}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}.",
                "check the file's format",
            )
        ) from None


def _load_hub(name: str, config_name: str | None, split: str):
    import datasets

    try:
        return datasets.load_dataset(name, config_name, split=split)
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            Problem(
                "data.dataset",
                f"could not load Hub dataset `{name}` (split `{split}`): {text}.",
                "check the id and split; offline (HF_HUB_OFFLINE=1) only cached datasets load; "
                "or point `data.dataset` at a local .jsonl/.csv/.parquet file",
            )
        ) from None


def _rename(dataset, columns: dict[str, str]):
    missing = [src for src in columns if src not in dataset.column_names]
    if missing:
        raise ConfigError(
            Problem(
                "data.columns",
                f"source column(s) {', '.join(missing)} not in the dataset; it has: "
                f"{', '.join(dataset.column_names)}.",
                None,
            )
        )
    for src, dst in columns.items():
        if src != dst:
            if dst in dataset.column_names:
                dataset = dataset.remove_columns(dst)
            dataset = dataset.rename_column(src, dst)
    return dataset


def check_columns(dataset, reward_needs: dict[str, list[str]]) -> None:
    """`prompt` plus every column a reward reads must be there, named with what exists."""
    problems = []
    have = dataset.column_names
    if "prompt" not in have:
        problems.append(
            Problem(
                "data.columns",
                f"the dataset has no `prompt` column; it has: {', '.join(have)}.",
                "map one, e.g. `data.columns: {question: prompt}`",
            )
        )
    for reward, needed in reward_needs.items():
        absent = [c for c in needed if c not in have]
        if absent:
            problems.append(
                Problem(
                    "rewards",
                    f"reward `{reward}` reads column(s) {', '.join(absent)}, which the dataset lacks; "
                    f"it has: {', '.join(have)}.",
                    f"map one with `data.columns: {{<column>: {absent[0]}}}`",
                )
            )
    if problems:
        raise ConfigError(problems)


def format_prompts(dataset, tokenizer, system_prompt: str | None):
    """String prompts stay plain text unless a system prompt is set; message lists and system
    prompts need the tokenizer's chat template."""
    first = dataset[0]["prompt"]
    conversational = isinstance(first, list)
    if (conversational or system_prompt) and not getattr(tokenizer, "chat_template", None):
        what = "chat-message prompts" if conversational else "`data.system_prompt`"
        raise ConfigError(
            Problem(
                "data.system_prompt" if system_prompt else "data.dataset",
                f"{what} need a tokenizer with a chat template; this model's tokenizer has none.",
                "use plain string prompts (and put the instruction into the prompt text)",
            )
        )
    if not system_prompt:
        return dataset

    def to_messages(row):
        prompt = row["prompt"]
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        if not messages or messages[0].get("role") != "system":
            messages = [{"role": "system", "content": system_prompt}, *messages]
        return {"prompt": messages}

    return dataset.map(to_messages)


def prompt_length(tokenizer, prompt) -> int:
    if isinstance(prompt, list):
        ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)
    return len(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def drop_too_long(dataset, tokenizer, max_completion_length: int, context: int | None):
    """TRL never truncates prompts: drop those whose tokens + max_completion_length exceed the
    model's context, and count them. Returns (dataset, dropped, longest prompt kept)."""
    lengths = [prompt_length(tokenizer, p) for p in dataset["prompt"]]
    if context is None:
        return dataset, 0, max(lengths, default=0)
    keep = [i for i, n in enumerate(lengths) if n + max_completion_length <= context]
    if not keep:
        raise ConfigError(
            Problem(
                "generation.max_completion_length",
                f"no prompt fits: the shortest prompt has {min(lengths)} tokens, + "
                f"{max_completion_length} completion tokens > the model's context of {context}.",
                f"set `generation.max_completion_length: {max(1, context - min(lengths))}` or use shorter prompts",
            )
        )
    dropped = len(dataset) - len(keep)
    if dropped:
        dataset = dataset.select(keep)
    return dataset, dropped, max(lengths[i] for i in keep)
