"""runtime/trl_args.py: `GRPOConfigLoader.trl_kwargs()` decides every `auto` for the machine it runs
on (probed as `config explain` does), not for an invented CPU; `facts=` names another machine."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import REPO_ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from grpolab.config import GRPOConfigLoader
from grpolab.runtime import hardware
from grpolab.runtime.hardware import GPU, HardwareFacts
from grpolab.runtime.resolve import resolve
from grpolab.runtime.trl_args import to_trl_kwargs

BF16_GPU = HardwareFacts(gpus=(GPU("faked H100", (9, 0)),), cores=8)


@pytest.fixture
def probed(monkeypatch):
    """probed(facts): the hardware probe answers `facts` (what a GPU box would report)."""

    def fake(facts: HardwareFacts):
        monkeypatch.setattr(hardware, "probe", lambda use_torch=True: facts)

    return fake


def test_cluster_trl_kwargs_on_a_bf16_gpu_machine(probed):
    """The acceptance case: the spec's Python API on a GPU box trains on the GPU in bf16."""
    probed(BF16_GPU)
    kwargs = GRPOConfigLoader(mode="cluster").trl_kwargs()
    assert kwargs["bf16"] is True and kwargs["use_cpu"] is False


def test_a_cpu_without_bf16_still_gets_fp32_on_cpu(probed):
    probed(HardwareFacts(cores=2))
    kwargs = GRPOConfigLoader(mode="cluster").trl_kwargs()
    assert kwargs["bf16"] is False and kwargs["use_cpu"] is True


MACHINES = st.builds(
    HardwareFacts,
    gpus=st.sampled_from([(), (GPU("old", (7, 0)),), (GPU("new", (8, 0)),) * 2, (GPU("unknown"),)]),
    cpu_bf16=st.booleans(),
    cores=st.integers(1, 64),
    installed=st.sets(st.sampled_from(hardware.OPTIONAL_ENGINES)).map(frozenset),
)


@settings(max_examples=25, deadline=None)
@given(facts=MACHINES, mode=st.sampled_from(["local", "cluster"]))
def test_default_is_the_probed_machine_for_every_machine(facts, mode):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hardware, "probe", lambda use_torch=True: facts)
        loader = GRPOConfigLoader(mode=mode)
        by_default = loader.trl_kwargs()
    assert by_default == loader.trl_kwargs(facts=facts)
    assert by_default == to_trl_kwargs(loader.config, resolve(loader.config, facts))
    cuda = bool(facts.gpus)
    assert by_default["use_cpu"] is not cuda
    assert by_default["bf16"] is (facts.gpu_bf16 if cuda else facts.cpu_bf16)  # the presets' bf16: auto


def test_config_room_loads_no_runtime_until_trl_kwargs_is_called():
    """`import grpolab.config` (and validating a config) never loads the runtime room; only the
    one seam, GRPOConfigLoader.trl_kwargs(), does, and still without torch, transformers or trl."""
    code = textwrap.dedent(
        """
        import sys
        from grpolab.config import GRPOConfigLoader
        loader = GRPOConfigLoader(mode="cluster", world_size=4)
        loader.render()
        print(sorted(m for m in sys.modules if m.startswith("grpolab.runtime")))
        loader.trl_kwargs()
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("trl", "torch", "transformers")))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[]", "[]"]
