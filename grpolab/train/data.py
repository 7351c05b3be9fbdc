"""Training data: built-in tasks (rows given by the caller), Hub datasets, or local JSONL/JSON/CSV/Parquet files,
mapped onto a `prompt` column plus whatever columns the rewards read."""

from __future__ import annotations

import json
from pathlib import Path

from grpolab.config import ConfigError, Problem
from grpolab.rewards.python import import_object
from grpolab.runtime import hub

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def head(dataset, n_rows: int | None):
    """The first `n_rows` rows (all of them for None)."""
    return dataset if n_rows is None or len(dataset) <= n_rows else dataset.select(range(n_rows))


def load_split(data_cfg, split: str, n_rows: int | None, seed: int, builtin_rows=None):
    """One split of the configured data, transformed and renamed; of a mixture (`data.datasets`), the
    training split is the mixture and another split comes from `data.dataset`. `builtin_rows(name,
    split, n_rows, seed)` gives a `builtin:NAME` dataset's rows (the caller's: the demo's tasks)."""
    if data_cfg.datasets and split == data_cfg.split:
        return head(load_mixture(data_cfg, seed, builtin_rows)[0], n_rows)
    key = "data.split" if split == data_cfg.split else "data.eval_split"
    return _load_source(data_cfg.dataset, split, n_rows, seed, builtin_rows, key, data_cfg)


def _load_source(source, split, n_rows, seed, builtin_rows, split_key, spec, where="data"):
    """One source (`data`, or the mixture's source at `where`): its first `n_rows` rows, through its
    `transform` and `columns` (of `spec`, which also names the Hub config)."""
    import datasets

    key = f"{where}.dataset" if where == "data" else f"{where}.path"
    if source.startswith("builtin:"):
        if builtin_rows is None:
            raise ConfigError.of(f"{where}.dataset", "built-in datasets are not available here.")
        rows = builtin_rows(source.partition(":")[2], split, n_rows, seed, key=split_key)
        dataset = datasets.Dataset.from_list(rows)
    elif Path(source).suffix.lower() in LOCAL_FORMATS or Path(source).is_file():
        dataset = _load_local(source, split, spec if where == "data" else None, key)
    else:
        # A Hub id, or a local folder laid out like a Hub dataset repo (same loading code).
        dataset = _load_hub(source, spec.config_name, split, key)
    dataset = head(dataset, n_rows)
    if spec.transform:
        dataset = apply_transform(dataset, spec.transform, f"{where}.transform")
    return _rename(dataset, spec.columns, f"{where}.columns")


def source_name(path: str) -> str:
    """A short label for a source: the file stem, the Hub id's last part, or the built-in task."""
    if path.startswith("builtin:"):
        return path.partition(":")[2]
    p = Path(path)
    return p.stem if p.suffix.lower() in LOCAL_FORMATS else path.rstrip("/").rsplit("/", 1)[-1]


def load_mixture(data_cfg, seed: int, builtin_rows=None, needs: dict | None = None):
    """`data.datasets`: each source loaded, transformed, renamed and given its system prompt, then weighted (weight 0.5
    keeps half its rows, 2 repeats each row twice; rows picked with the seed), concatenated and shuffled with the seed.
    A `source` column names each row's source. Returns (dataset, {source: {"rows": taken, "of": available}})."""
    import datasets

    parts, counts = [], {}  # counts: by unique source name, in order
    for i, src in enumerate(data_cfg.datasets):
        where = f"data.datasets[{i}]"
        name = src.name or source_name(src.path)
        name = name if name not in counts else f"{name}_{i}"
        ds = _load_source(src.path, src.split, src.max_samples, seed, builtin_rows, f"{where}.split", src, where=where)
        have = ", ".join(ds.column_names)
        if "prompt" not in ds.column_names:
            raise ConfigError.of(
                f"{where}.columns",
                f"source `{name}` has no `prompt` column; it has: {have}.",
                "map one, e.g. `columns: {question: prompt}`, or give it a `transform`",
            )
        for reward, needed in (needs or {}).items():
            if absent := [c for c in needed if c not in ds.column_names and c != "source"]:  # `source` is added here
                raise ConfigError.of(
                    f"{where}.columns",
                    f"reward `{reward}` reads column(s) {', '.join(absent)}, which source `{name}` lacks; "
                    f"it has: {have}.",
                    f"map one with `columns: {{<column>: {absent[0]}}}` on this source",
                )
        if src.system_prompt:
            ds = ds.map(_with_system(src.system_prompt))
        available = len(ds)
        ds = _weighted(ds, src.weight, seed + i)
        counts[name] = {"rows": len(ds), "of": available, "weight": src.weight}
        parts.append(ds.add_column("source", [name] * len(ds)))
    parts = _aligned(parts)
    try:
        mixed = datasets.concatenate_datasets(parts)
    except Exception as exc:
        features = "; ".join(f"{n}: {dict(p.features)}" for n, p in zip(counts, parts))
        raise ConfigError.of(
            "data.datasets",
            f"the sources do not combine ({type(exc).__name__}: {exc}); their columns: {features}.",
            "give every source the same column types (a `transform` can convert them)",
        ) from None
    if len(mixed) == 0:
        raise ConfigError.of("data.datasets", "the mixture has no rows.", "raise a source's weight or max_samples")
    return mixed.shuffle(seed=seed), counts


def _weighted(ds, weight: float, seed: int):
    whole, frac = int(weight), weight - int(weight)
    order = ds.shuffle(seed=seed)
    picks = list(range(len(ds))) * whole + list(range(round(frac * len(ds))))
    return order.select(picks) if picks != list(range(len(ds))) else order


def _aligned(parts):
    """Same columns, same prompt kind in every source: the columns every source has are kept (rewards' columns were
    checked per source), and plain string prompts become one user message when another source has chat prompts."""
    common = set.intersection(*(set(p.column_names) for p in parts))
    chat = {isinstance(p[0]["prompt"], list) for p in parts if len(p)}
    out = []
    for p in parts:
        p = p.remove_columns([c for c in p.column_names if c not in common])
        if len(chat) > 1 and len(p) and not isinstance(p[0]["prompt"], list):
            p = p.map(lambda row: {"prompt": [{"role": "user", "content": row["prompt"]}]})
        out.append(p)
    return out


def _with_system(system_prompt: str):
    def to_messages(row):
        prompt = row["prompt"]
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        if not messages or messages[0].get("role") != "system":
            messages = [{"role": "system", "content": system_prompt}, *messages]
        return {"prompt": messages}

    return to_messages


def load_transform(spec: str, key: str):
    func = import_object(spec, key, "transform")
    if not callable(func):
        raise ConfigError.of(key, f"transform `{spec}` is a {type(func).__name__}, not a function.")
    return func


# Rows a transform is tried on before the whole dataset is mapped: a broken transform fails on
# a row the user can look at, in a second, not minutes into a map over a large dataset.
CHECK_ROWS = 3


def apply_transform(dataset, spec: str, key: str):
    """Map every row through the user's `transform(row) -> dict`; the result must have `prompt`.
    Errors name the transform, the row index and the row."""
    func = load_transform(spec, key)

    def run(row, index):
        try:
            out = func(dict(row))
        except Exception as exc:
            shown = repr(dict(row))
            shown = shown if len(shown) < 300 else shown[:300] + "...}"
            why = f"transform `{spec}` raised {type(exc).__name__}: {exc} on row {index}: {shown}."
            raise ConfigError.of(key, why) from None
        if not isinstance(out, dict):
            raise ConfigError.of(
                key, f"transform `{spec}` returned {type(out).__name__} for row {index}; it must return a dict."
            )
        if "prompt" not in out and "prompt" not in row:
            raise ConfigError.of(
                key,
                f"transform `{spec}` returned no `prompt` for row {index} (keys: {', '.join(out) or 'none'}).",
                "return {'prompt': ..., <the columns the rewards read>: ...}",
            )
        return out

    for i in range(min(CHECK_ROWS, len(dataset))):
        run(dataset[i], i)
    mapped = dataset.map(run, with_indices=True)
    first = run(dataset[0], 0) if len(dataset) else {}
    # Columns the transform replaced by others are dropped, so the rows hold what it returned.
    dropped = [c for c in dataset.column_names if c not in first and c != "prompt"]
    return mapped.remove_columns([c for c in dropped if c in mapped.column_names]) if first else mapped


def _load_local(source: str, split: str, data_cfg, key: str):
    """A local file; for `eval_split` a second file path may be given."""
    import datasets

    other = data_cfg is not None and split != data_cfg.split
    second = other and Path(split).suffix.lower() in LOCAL_FORMATS
    if other and not second:
        # A local file has one split: naming another would score the training rows as held-out.
        raise ConfigError.of(
            "data.eval_split" if split == data_cfg.eval_split else "eval.split",
            f"`{split}` is not a split of the local file `{source}` (a file has one split) nor a data file.",
            "carve held-out rows with `data.test_size: 0.1`, or give the held-out file's path",
        )
    path = Path(split) if second else Path(source)
    if not path.is_file():
        raise ConfigError.of(key, f"data file `{path}` not found.", "give a path relative to the current directory")
    _check_file_rows(path, key)
    builder = LOCAL_FORMATS.get(path.suffix.lower())
    if builder is None:
        raise ConfigError.of(
            "data.dataset", f"`{path.suffix}` files are not supported; use one of {', '.join(LOCAL_FORMATS)}."
        )
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:
        raise ConfigError.of(
            "data.dataset",
            f"could not read `{path}` as {builder}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}.",
            "check the file's format",
        ) from None


def _load_hub(name: str, config_name: str | None, split: str, key: str):
    import datasets

    folder = Path(name).is_dir()  # a local folder: no Hub involved, and none is named in its errors
    if not folder:
        hub.check_reachable(name, key, repo_type="dataset")
    try:
        return datasets.load_dataset(name, config_name, split=split)
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if folder:
            files = sorted(p.name for p in Path(name).iterdir())[:5]
            raise ConfigError.of(
                key,
                f"could not load the local folder `{name}` as a dataset (split `{split}`): {text}; "
                f"it holds: {', '.join(files) or 'nothing'}.",
                f"point `{key}` at a data file inside it (.jsonl/.json/.csv/.parquet), or give a folder "
                "laid out like a Hub dataset (data files named by split, e.g. train.jsonl)",
            ) from None
        raise ConfigError.of(
            key,
            f"could not load Hub dataset `{name}` (split `{split}`): {text}.",
            "check the id and split; offline (HF_HUB_OFFLINE=1) only cached datasets load; "
            "or point `data.dataset` at a local .jsonl/.csv/.parquet file",
        ) from None


def _rename(dataset, columns: dict[str, str], key: str):
    if missing := [src for src in columns if src not in dataset.column_names]:
        raise ConfigError.of(
            key,
            f"source column(s) {', '.join(missing)} not in the dataset; it has: {', '.join(dataset.column_names)}.",
        )
    for src, dst in columns.items():
        if src != dst:
            if dst in dataset.column_names:
                dataset = dataset.remove_columns(dst)
            dataset = dataset.rename_column(src, dst)
    return dataset


def _check_file_rows(path: Path, key: str) -> None:
    """An empty data file, or a JSONL line that is not one JSON object, named by file and line
    (the datasets library says `StopIteration` or a pyarrow error instead)."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.suffix.lower() != ".parquet" else None
    if path.stat().st_size == 0 or (text is not None and not text.strip()):
        raise ConfigError.of(
            key, f"data file `{path}` is empty (no rows).", 'add rows, e.g. {"prompt": "2+2=", "answer": "4"}'
        )
    if path.suffix.lower() != ".jsonl":
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            row, why = None, f"is not JSON ({exc.msg})"
        else:
            why = f"is a JSON {type(row).__name__}, not an object"
        if not isinstance(row, dict):
            raise ConfigError.of(
                key,
                f"`{path}` line {number} {why}.",
                'one JSON object per line, e.g. {"prompt": "2+2=", "answer": "4"}',
                f"{path}:{number}",
            )


def check_columns(dataset, reward_needs: dict[str, list[str]], source: str = "the dataset") -> None:
    """`prompt` plus every column a reward reads must be there, named with what exists; the data
    has rows, and every prompt is text or a list of chat messages (row and column named)."""
    if len(dataset) == 0:
        raise ConfigError.of("data.dataset", f"{source} has no rows.", "give a dataset with rows")
    have, listed, problems = dataset.column_names, ", ".join(dataset.column_names), []
    if "prompt" not in have:
        why = f"the dataset has no `prompt` column; it has: {listed}."
        problems.append(Problem("data.columns", why, "map one, e.g. `data.columns: {question: prompt}`"))
    for reward, needed in reward_needs.items():
        if absent := [c for c in needed if c not in have]:
            why = f"reward `{reward}` reads column(s) {', '.join(absent)}, which the dataset lacks; it has: {listed}."
            problems.append(Problem("rewards", why, f"map one with `data.columns: {{<column>: {absent[0]}}}`"))
    # The first row whose prompt is neither text nor chat messages says what is wrong; the file may have thousands.
    for i, prompt in enumerate(dataset["prompt"] if "prompt" in have else []):
        chat = isinstance(prompt, list) and all(isinstance(m, dict) and "content" in m for m in prompt)
        if not (isinstance(prompt, str) or chat):
            why = (
                f"{source}, row {i + 1}, column `prompt`: {prompt!r:.60} is a {type(prompt).__name__}; "
                "a prompt is text or a list of chat messages ({role, content})."
            )
            fix = "fix that row (quote a number as text), or map another column to `prompt`"
            problems.append(Problem("data.columns", why, fix))
            break
    if problems:
        raise ConfigError(problems)


def format_prompts(dataset, tokenizer, system_prompt: str | None):
    """String prompts stay plain text unless a system prompt is set; message lists and system
    prompts need the tokenizer's chat template."""
    conversational = isinstance(dataset[0]["prompt"], list)
    if (conversational or system_prompt) and not getattr(tokenizer, "chat_template", None):
        raise ConfigError.of(
            "data.system_prompt" if system_prompt else "data.dataset",
            f"{'chat-message prompts' if conversational else '`data.system_prompt`'} need a tokenizer with a "
            "chat template; this model's tokenizer has none.",
            "use plain string prompts (and put the instruction into the prompt text)",
        )
    return dataset.map(_with_system(system_prompt)) if system_prompt else dataset


def prompt_length(tokenizer, prompt) -> int:
    if isinstance(prompt, list):
        ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)
        return len(ids["input_ids"] if hasattr(ids, "keys") else ids)
    return len(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def drop_too_long(
    dataset, tokenizer, max_completion_length: int, context: int | None, length_key="generation.max_completion_length"
):
    """TRL never truncates prompts: drop those whose tokens + max_completion_length exceed the
    model's context, and count them. Returns (dataset, dropped, longest prompt kept).
    `length_key`: where max_completion_length came from (the held-out prompts may have their own)."""
    lengths = [prompt_length(tokenizer, p) for p in dataset["prompt"]]
    if context is None or not lengths:
        return dataset, 0, max(lengths, default=0)
    keep = [i for i, n in enumerate(lengths) if n + max_completion_length <= context]
    if not keep:
        room = context - min(lengths)  # completion tokens the shortest prompt leaves
        raise ConfigError.of(
            length_key,
            f"no {'held-out ' if length_key.startswith('eval.') else ''}prompt fits: the shortest prompt has "
            f"{min(lengths)} tokens, + {max_completion_length} completion tokens > the model's context of {context}.",
            f"set `{length_key}: {room}` or use shorter prompts"
            if room >= 16
            else f"use shorter prompts, or a model with a longer context than {context} tokens",
        )
    dropped = len(dataset) - len(keep)
    return (dataset.select(keep) if dropped else dataset), dropped, max(lengths[i] for i in keep)


def carve_eval(dataset, test_size, seed: int):
    """`data.test_size`: (train, eval) split of the training rows with the seed; a fraction or a count."""
    n = len(dataset)
    count = test_size if isinstance(test_size, int) else round(test_size * n)
    if count < 1 or count >= n:
        raise ConfigError.of(
            "data.test_size",
            f"{test_size} leaves {'no eval rows' if count < 1 else 'no training rows'} of the {n} training prompts.",
            f"set `data.test_size` to a fraction in (0, 1) or a count below {n}",
        )
    parts = dataset.train_test_split(test_size=count, seed=seed, shuffle=True)
    return parts["train"], parts["test"]
