"""The built-in demo: addition task, greedy accuracy metric, and the cached tiny model."""

from __future__ import annotations

import os
import time

import pytest

from grpolab.demo import addition, tiny_model
from grpolab.demo.addition import greedy_accuracy, make_addition_rows, parse_number

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# --- the task ---------------------------------------------------------------------------------------------------


def _pair(prompt: str) -> tuple[int, int]:
    a, b = prompt.rstrip("=").split("+")
    return int(a), int(b)


def test_splits_are_disjoint_cover_every_pair_and_hold_out_both_orders():
    train = make_addition_rows(addition.split_size("train"), seed=0, split="train")
    held_out = make_addition_rows(addition.split_size("eval"), seed=0, split="eval")
    train_pairs = {_pair(r["prompt"]) for r in train}
    eval_pairs = {_pair(r["prompt"]) for r in held_out}
    assert len(train_pairs) == len(train) and len(eval_pairs) == len(held_out)  # no duplicates
    assert not train_pairs & eval_pairs
    assert len(train_pairs | eval_pairs) == 90 * 90  # every two-digit pair belongs to one split
    # "b+a" is held out with "a+b", so commutativity cannot leak held-out prompts into training.
    assert not {(b, a) for a, b in eval_pairs} & train_pairs
    assert 0.1 < len(eval_pairs) / (90 * 90) < 0.3


def test_rows_are_correct_sums_in_the_documented_format():
    for row in make_addition_rows(200, seed=3, split="eval"):
        a, b = _pair(row["prompt"])
        assert row["prompt"] == f"{a}+{b}="
        assert 10 <= a <= 99 and 10 <= b <= 99
        assert row["answer"] == str(a + b)
        assert set(row) == {"prompt", "answer"}


def test_rows_are_deterministic_per_seed():
    assert make_addition_rows(50, seed=7) == make_addition_rows(50, seed=7)
    assert make_addition_rows(50, seed=7) != make_addition_rows(50, seed=8)
    assert make_addition_rows(50, seed=7, split="eval") == make_addition_rows(50, seed=7, split="eval")
    assert make_addition_rows(0, seed=1) == []


@pytest.mark.parametrize("split", ["test", "validation", "", "TRAIN"])
def test_unknown_split_is_rejected(split):
    with pytest.raises(ValueError, match="unknown split"):
        make_addition_rows(5, seed=0, split=split)


@pytest.mark.parametrize("split", ["train", "eval"])
def test_n_outside_the_pool_is_rejected(split):
    size = addition.split_size(split)
    assert len(make_addition_rows(size, seed=0, split=split)) == size
    with pytest.raises(ValueError, match="between 0 and"):
        make_addition_rows(size + 1, seed=0, split=split)
    with pytest.raises(ValueError):
        make_addition_rows(-1, seed=0, split=split)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("46", "46"),
        ("46<eos>", "46"),
        ("146+3=", "146"),
        (" 46", "46"),
        ("046", "46"),
        ("0", "0"),
        ("12 34", "12"),
        ("", None),
        ("=46", None),
        ("+", None),
        ("abc", None),
    ],
)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


# --- greedy_accuracy ------------------------------------------------------------------------------------------


class OracleModel(torch.nn.Module):
    """Stands in for a causal LM: 'generates' the true sum (or sum+1 for odd first operands if `wrong_on_odd`)."""

    def __init__(self, tokenizer, wrong_on_odd=False):
        super().__init__()
        self.tokenizer, self.wrong_on_odd = tokenizer, wrong_on_odd
        self.calls = []

    @property
    def device(self):
        return torch.device("cpu")

    def generate(self, input_ids, attention_mask, max_new_tokens, do_sample, **kwargs):
        assert not do_sample and not self.training and not torch.is_grad_enabled()
        self.calls.append((input_ids.clone(), attention_mask.clone()))
        out = []
        for ids, mask in zip(input_ids, attention_mask):
            assert mask[-1] == 1, "prompts must be left-padded"
            a, b = _pair(self.tokenizer.decode(ids[mask.bool()]))
            answer = a + b + (1 if self.wrong_on_odd and a % 2 else 0)
            new = self.tokenizer(str(answer), add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
            new = (new + [self.tokenizer.pad_token_id] * max_new_tokens)[:max_new_tokens]
            out.append(torch.cat([ids, torch.tensor(new)]))
        return torch.stack(out)


def test_greedy_accuracy_scores_exact_answers_with_left_padding():
    tokenizer = tiny_model.build_tokenizer()
    # Mixed prompt lengths force padding; the oracle checks that it is on the left.
    rows = [
        {"prompt": "1+2=", "answer": "3"},
        {"prompt": "12+34=", "answer": "46"},
        {"prompt": "5+55=", "answer": "60"},
    ]
    oracle = OracleModel(tokenizer)
    oracle.train()
    assert greedy_accuracy(oracle, tokenizer, rows, batch_size=2) == 1.0
    assert oracle.training, "the previous train/eval mode is restored"
    assert [len(ids) for ids, _ in oracle.calls] == [2, 1]  # batched as asked
    assert oracle.calls[0][0][0, 0] == tokenizer.pad_token_id

    half_wrong = OracleModel(tokenizer, wrong_on_odd=True).eval()
    rows = [{"prompt": f"{a}+20=", "answer": str(a + 20)} for a in range(10, 30)]
    assert greedy_accuracy(half_wrong, tokenizer, rows) == 0.5
    assert not half_wrong.training
    assert greedy_accuracy(half_wrong, tokenizer, [{"prompt": "12+20=", "answer": "33"}]) == 0.0


def test_greedy_accuracy_rejects_empty_rows():
    with pytest.raises(ValueError):
        greedy_accuracy(OracleModel(tiny_model.build_tokenizer()), tiny_model.build_tokenizer(), [])


def _random_tiny_model(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=32,
        n_embd=16,
        n_layer=1,
        n_head=2,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    return GPT2LMHeadModel(config)


def test_greedy_accuracy_on_a_real_gpt2_is_a_reproducible_fraction():
    tokenizer = tiny_model.build_tokenizer()
    model = _random_tiny_model(tokenizer).train()
    rows = make_addition_rows(40, seed=0, split="eval")
    first = greedy_accuracy(model, tokenizer, rows, batch_size=16)
    assert 0.0 <= first <= 1.0
    assert greedy_accuracy(model, tokenizer, rows, batch_size=40) == first
    assert model.training


# --- tokenizer ------------------------------------------------------------------------------------------------


def test_tokenizer_is_character_level_left_padding_without_added_tokens():
    tokenizer = tiny_model.build_tokenizer()
    ids = tokenizer("12+34=")["input_ids"]  # default add_special_tokens=True, as TRL calls it
    assert len(ids) == 6 and tokenizer.decode(ids) == "12+34="
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.chat_template is None
    batch = tokenizer(["1+2=", "12+34="], padding=True)
    assert batch["input_ids"][0][:2] == [tokenizer.pad_token_id] * 2
    assert tokenizer.decode([*tokenizer("46")["input_ids"], tokenizer.eos_token_id], skip_special_tokens=True) == "46"


# --- demo_model_path: caching mechanics, with a fast stand-in for the real build ------------------------------


@pytest.fixture
def fake_build(monkeypatch):
    """Replace the ~30 s pretraining with saving a random tiny model; count builds."""
    calls = []

    def build(out_dir):
        calls.append(out_dir)
        tokenizer = tiny_model.build_tokenizer()
        _random_tiny_model(tokenizer).save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        (out_dir / tiny_model.MARKER).write_text("{}")
        return {"pretrain_seconds": 0.0, "eval_accuracy": 0.0}

    monkeypatch.setattr(tiny_model, "_build", build)
    return calls


def test_demo_model_path_builds_once_then_reuses_the_cache(tmp_path, fake_build, capsys):
    path = tiny_model.demo_model_path(tmp_path)
    assert path.parent == tmp_path and path.name.startswith("demo-addition-")
    assert "building the demo model" in capsys.readouterr().err
    assert AutoModelForCausalLM.from_pretrained(path).config.model_type == "gpt2"
    assert AutoTokenizer.from_pretrained(path).padding_side == "left"
    # No temporary folders are left behind.
    assert [p.name for p in tmp_path.iterdir()] == [path.name]

    mtime = (path / tiny_model.MARKER).stat().st_mtime_ns
    assert tiny_model.demo_model_path(tmp_path, quiet=True) == path
    assert len(fake_build) == 1
    assert (path / tiny_model.MARKER).stat().st_mtime_ns == mtime
    assert capsys.readouterr().err == ""


def test_quiet_build_prints_nothing(tmp_path, fake_build, capsys):
    tiny_model.demo_model_path(tmp_path, quiet=True)
    assert capsys.readouterr() == ("", "")


def test_default_cache_dir_honours_grpolab_cache(tmp_path, monkeypatch, fake_build):
    monkeypatch.setenv("GRPOLAB_CACHE", str(tmp_path / "cache"))
    assert tiny_model.demo_model_path(quiet=True).parent == tmp_path / "cache"
    monkeypatch.delenv("GRPOLAB_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tiny_model.default_cache_dir() == tmp_path / "home" / ".cache" / "grpolab"


def test_changed_recipe_builds_into_a_new_folder(tmp_path, monkeypatch, fake_build):
    first = tiny_model.demo_model_path(tmp_path, quiet=True)
    monkeypatch.setitem(tiny_model.RECIPE, "lr", tiny_model.RECIPE["lr"] * 2)
    second = tiny_model.demo_model_path(tmp_path, quiet=True)
    assert second != first and len(fake_build) == 2
    assert (first / tiny_model.MARKER).is_file() and (second / tiny_model.MARKER).is_file()


def test_interrupted_build_leaves_nothing_usable(tmp_path, monkeypatch):
    def crash(out_dir):
        (out_dir / "config.json").write_text("{}")  # half-written
        raise KeyboardInterrupt

    monkeypatch.setattr(tiny_model, "_build", crash)
    with pytest.raises(KeyboardInterrupt):
        tiny_model.demo_model_path(tmp_path, quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_incomplete_folder_under_the_final_name_is_rebuilt(tmp_path, fake_build):
    target = tmp_path / f"demo-addition-{tiny_model._source_digest()}"
    target.mkdir()
    (target / "config.json").write_text("{}")  # e.g. copied by hand, never finished
    assert tiny_model.demo_model_path(tmp_path, quiet=True) == target
    assert len(fake_build) == 1 and (target / tiny_model.MARKER).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_concurrent_build_that_finished_first_wins(tmp_path, monkeypatch, fake_build):
    target = tmp_path / f"demo-addition-{tiny_model._source_digest()}"
    real_build = tiny_model._build

    def build_while_another_process_publishes(out_dir):
        info = real_build(out_dir)
        target.mkdir()
        (target / tiny_model.MARKER).write_text('{"winner": true}')
        return info

    monkeypatch.setattr(tiny_model, "_build", build_while_another_process_publishes)
    assert tiny_model.demo_model_path(tmp_path, quiet=True) == target
    assert (target / tiny_model.MARKER).read_text() == '{"winner": true}'
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_stale_temporary_folders_are_cleaned_up(tmp_path, fake_build):
    name = f"demo-addition-{tiny_model._source_digest()}"
    old, fresh = tmp_path / f".{name}.tmp-old", tmp_path / f".{name}.tmp-fresh"
    old.mkdir()
    fresh.mkdir()  # may belong to a build running right now: left alone
    long_ago = time.time() - 2 * tiny_model._STALE_TMP_SECONDS
    os.utime(old, (long_ago, long_ago))
    tiny_model.demo_model_path(tmp_path, quiet=True)
    assert not old.exists() and fresh.exists()


# --- the real build (slow: pretrains for ~20-40 s) ------------------------------------------------------------


@pytest.fixture(scope="module")
def real_model_dir(tmp_path_factory):
    cache = tmp_path_factory.mktemp("grpolab-cache")
    start = time.perf_counter()
    path = tiny_model.demo_model_path(cache, quiet=True)
    return path, time.perf_counter() - start


@pytest.mark.slow
def test_real_demo_model_loads_offline_and_half_solves_held_out_addition(real_model_dir):
    path, _ = real_model_dir
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    n_params = sum(p.numel() for p in model.parameters())
    assert 300_000 < n_params < 1_500_000
    assert model.config.eos_token_id == tokenizer.eos_token_id == model.generation_config.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id == model.generation_config.pad_token_id
    assert model.config.bos_token_id is not None and model.generation_config.bos_token_id is not None
    assert tokenizer.padding_side == "left" and tokenizer.chat_template is None

    rows = make_addition_rows(300, seed=123, split="eval")
    accuracy = greedy_accuracy(model, tokenizer, rows)
    # Partly solved: GRPO needs both correct samples to reinforce and room to improve.
    assert 0.10 < accuracy < 0.75
    assert greedy_accuracy(model, tokenizer, rows, batch_size=17) == accuracy


@pytest.mark.slow
def test_real_demo_model_is_reused_from_the_cache(real_model_dir):
    path, build_seconds = real_model_dir
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert tiny_model.demo_model_path(path.parent, quiet=True) == path
    assert time.perf_counter() - start < min(1.0, build_seconds / 5)
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime
