"""A reward cannot corrupt another reward or grpolab (issue 21, section 4): each reward gets its
own copies of prompts, completions and columns. The generator mutates every argument a reward
receives, in every way a list or a chat message can be changed in place, and checks that the next
reward and grpolab's own check still see the original data."""

from __future__ import annotations

import copy

import pytest

from grpolab.rewards import wrap
from grpolab.rewards.builtin import numeric_match
from grpolab.rewards.wrap import make_reward

PLAIN = {"prompts": ["1+1=", "2+2="], "completions": ["7", "9"], "answer": ["2", "4"]}
CHAT = {
    "prompts": [[{"role": "user", "content": "1+1="}], [{"role": "user", "content": "2+2="}]],
    "completions": [[{"role": "assistant", "content": "7"}], [{"role": "assistant", "content": "9"}]],
    "answer": ["2", "4"],
}


def _set_item(v):
    v[0] = "2" if isinstance(v[0], str) else [{"role": "assistant", "content": "2"}]


def _nested(v):
    if isinstance(v[0], list):
        v[0][0]["content"] = "2"
    else:
        v[0] = "2"


MUTATIONS = {
    "item assigned": _set_item,
    "appended": lambda v: v.append(v[0]),
    "cleared": lambda v: v.clear(),
    "reversed": lambda v: v.reverse(),
    "nested message edited": _nested,
}


@pytest.mark.parametrize("data", [PLAIN, CHAT], ids=["plain", "chat"])
@pytest.mark.parametrize("argument", ["prompts", "completions", "answer"])
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_a_reward_that_mutates_its_input_changes_nothing_for_the_next(data, argument, mutation):
    data = copy.deepcopy(data)
    original = copy.deepcopy(data)

    def vandal(prompts, completions, answer, **kw):
        MUTATIONS[mutation]({"prompts": prompts, "completions": completions, "answer": answer}[argument])
        return [0.0, 0.0]

    seen = {}

    def witness(prompts, completions, answer, **kw):
        seen.update(prompts=prompts, completions=completions, answer=answer)
        return [0.0, 0.0]

    first = make_reward("vandal.py:vandal", vandal, {}, "vandal")
    second = make_reward("witness.py:witness", witness, {}, "witness")
    columns = {"answer": data["answer"]}
    first(data["prompts"], data["completions"], **columns)
    second(data["prompts"], data["completions"], **columns)
    assert seen == original
    assert data == original  # grpolab's (and TRL's) own lists are untouched


def test_the_issue_example_numeric_match_scores_the_model_text(capsys):
    """A reward that overwrote completions[i] with the answer made numeric_match reach 1.0 on a
    random model."""

    def cheat(completions, answer, **kw):
        for i, a in enumerate(answer):
            completions[i] = a
        return [0.0] * len(completions)

    completions, answer = ["7", "9"], ["2", "4"]
    make_reward("cheat.py:cheat", cheat, {}, "cheat")(["1+1=", "2+2="], completions, answer=answer)
    scores = make_reward("numeric_match", numeric_match, {}, "numeric_match")(
        ["1+1=", "2+2="], completions, answer=answer
    )
    assert scores == [0.0, 0.0] and completions == ["7", "9"]


def test_a_slow_reward_gets_one_note_naming_it(monkeypatch, capsys):
    monkeypatch.setattr(wrap, "SLOW_SECONDS", 0.0)
    reward = make_reward("slow.py:slow", lambda completions, **kw: [1.0] * len(completions), {}, "slow")
    reward(["p"], ["c"])
    reward(["p"], ["c"])
    err = capsys.readouterr().err
    assert err.count("note: reward `slow.py:slow` took") == 1 and "batch of 1 completions" in err
