"""TrainRequest owns the training flags: every flag survives to_argv -> parse -> from_args, so a
flag added to the parser reaches launched ranks, the SLURM script and sweep trials."""

from __future__ import annotations

import dataclasses

import pytest

from grpolab.train.request import TrainRequest, build_parser

SAMPLE = {str: "value-1", bool: True, tuple: ("grpo.beta=0.05", "training.seed=3")}


def _kind(f) -> type:
    return {"switch": bool, "list": tuple}.get(f.metadata["kind"], str)


@pytest.mark.parametrize("field", dataclasses.fields(TrainRequest), ids=lambda f: f.name)
def test_every_flag_round_trips(field):
    request = TrainRequest(**{field.name: SAMPLE[_kind(field)]})
    parsed = TrainRequest.from_args(build_parser().parse_args(request.to_argv()))
    assert parsed == request
    assert getattr(parsed, field.name) != getattr(TrainRequest(), field.name)  # the value really travelled


def test_all_flags_at_once_round_trip_and_ranks_drop_the_show_only_flags():
    request = TrainRequest(**{f.name: SAMPLE[_kind(f)] for f in dataclasses.fields(TrainRequest)})
    assert TrainRequest.from_args(build_parser().parse_args(request.to_argv())) == request
    ranks = request.for_ranks()
    assert not ranks.dry_run and not ranks.print_launch_command
    assert "--dry-run" not in ranks.to_argv() and "--set" in ranks.to_argv()


def test_the_parser_knows_exactly_the_request_fields():
    parser = build_parser()
    dests = {a.dest for a in parser._actions if a.dest != "help"}
    assert dests == {f.name for f in dataclasses.fields(TrainRequest)}


def test_flags_are_the_top_config_layer():
    assert TrainRequest(model="m", output_dir="o").flags() == {"model.name_or_path": "m", "output_dir": "o"}
    assert TrainRequest(overrides=("model.name_or_path=x",)).gives_model()
    assert not TrainRequest(overrides=("grpo.beta=0.1",)).gives_model()
