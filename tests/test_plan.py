"""`corea-jax plan`: a config's update and rollout compiled ahead of time for a TPU slice.

libtpu (the `test` extra's `jax[tpu]`) describes the slice; no TPU is needed, and the host's
JAX stays on the CPU (conftest's JAX_PLATFORMS=cpu). Each compile is of the tiny smoke model
with short prompts, a few seconds each.
"""

import importlib.util
import os
import re

import pytest
from conftest import REPO

from corea_jax.cli import main
from corea_jax.errors import CoreaError
from corea_jax.parallel.aot import CHIPS, parse_topology

SMOKE = f"--config={REPO / 'configs' / 'smoke.py'}"
PEAK = re.compile(r"peak\s+([\d.]+) (MiB|GiB) of ([\d.]+) GiB HBM")


@pytest.fixture
def libtpu(monkeypatch):
    """libtpu importable: installed (the test extra), or in the directory $COREA_LIBTPU_PATH."""
    extra = os.environ.get("COREA_LIBTPU_PATH")
    if extra:
        monkeypatch.syspath_prepend(extra)
    if importlib.util.find_spec("libtpu") is None:
        pytest.skip("libtpu not importable (pip install 'corea-jax[test]', or COREA_LIBTPU_PATH)")


def test_smoke_config_fits_a_v5e_slice_with_positive_memory_below_hbm(libtpu, capsys):
    status = main(["plan", SMOKE, "--topology=v5e:2x2", "--prompt-tokens=16"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "devices: 4 x TPU v5e" in out
    peak, unit, hbm = PEAK.search(out).groups()
    peak_gib = float(peak) / (1024 if unit == "MiB" else 1)
    assert 0 < peak_gib < float(hbm)
    assert float(hbm) == pytest.approx(CHIPS["TPU v5e"].hbm_bytes / 2**30, abs=0.01)
    for program in ("update", "rollout prefill", "rollout decode step"):
        assert re.search(rf"{program}\s+total [\d.]+ [MG]iB", out), program
    assert re.search(r"FLOPs per step\s+update [\d.e+]+, rollout [\d.e+]+", out)
    assert "fits on v5e:2x2" in out


def test_an_oversized_config_does_not_fit_and_says_why_in_one_line(libtpu, capsys):
    # 2 layers of width 32768 and SwiGLU width 131072: 26 G float32 parameters, about 26 GiB per
    # chip of a 4-chip v5e slice before the optimizer, against 15.75 GiB of HBM.
    status = main([
        "plan", SMOKE, "--topology=v5e:2x2", "--prompt-tokens=16",
        "--config.model.scratch.spec.hidden_size=32768",
        "--config.model.scratch.spec.intermediate_size=131072",
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert status != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("corea-jax: error: v5e:2x2: does not fit:")
    assert "GiB" in lines[0] or "RESOURCE_EXHAUSTED" in lines[0]


def test_plan_help_names_the_topology_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "--help"])
    assert exit_info.value.code == 0
    assert "--topology" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["v7:2x2", "v5e", "v5e:2", "tpu:2x2"])
def test_a_malformed_topology_name_is_one_error_naming_it(name):
    with pytest.raises(CoreaError, match=re.escape(name)):
        parse_topology(name)


def test_topology_names_parse_to_generation_and_chip_grid():
    assert parse_topology("v5p:2x2x4") == ("v5p", (2, 2, 4))
    assert parse_topology("v6e:4x8") == ("v6e", (4, 8))


def test_local_topology_on_a_cpu_host_is_one_error_without_chip_figures(capsys):
    status = main(["plan", SMOKE, "--topology=local", "--prompt-tokens=16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0
    assert len(err) == 1 and "no chip figures for device kind 'cpu'" in err[0]


def test_state_bytes_per_device_are_the_parameter_count_on_one_device_and_shrink_with_fsdp():
    import jax

    from corea_jax.cli.config import load_config
    from corea_jax.cli.plan import workload_from_config
    from corea_jax.parallel.plan import abstract_state, shard_bytes
    from corea_jax.parallel.sharding import make_mesh

    workload, run = workload_from_config(load_config(SMOKE.split("=", 1)[1]), prompt_tokens=16)
    per_device = {}
    for n in (1, 4):
        mesh = make_mesh((1, -1, 1), jax.devices()[:n])
        _, state, _, _ = abstract_state(workload, run, mesh)
        per_device[n] = shard_bytes(state.params), shard_bytes(state.opt_state)
    params, optimizer = per_device[1]
    assert params == 4 * workload.model.num_params()  # float32, nothing allocated
    assert optimizer >= 2 * params  # AdamW's two moments
    assert per_device[4][0] < params / 2 and per_device[4][1] < optimizer / 2


def test_scanned_layers_count_every_layers_flops(libtpu):
    """`compute.scan_layers`: XLA counts the layer loop's body once, so the plan extrapolates
    the update's FLOPs from its 1- and 2-layer unrolled versions; the figure matches the
    unrolled program's own count (the smoke model made 4 layers deep, on v5e:2x2)."""
    import dataclasses

    from corea_jax.cli.config import load_config
    from corea_jax.cli.plan import workload_from_config
    from corea_jax.parallel.aot import topology_devices
    from corea_jax.parallel.plan import plan_run

    config = load_config(SMOKE.split("=", 1)[1], ["--config.model.scratch.spec.num_layers=4"])
    workload, run = workload_from_config(config, prompt_tokens=16)
    devices = topology_devices("v5e:2x2")
    plans = {}
    for scan in (False, True):
        compute = dataclasses.replace(run.compute, scan_layers=scan)
        plans[scan] = plan_run(workload, dataclasses.replace(run, compute=compute), devices,
                               parts=("update",))  # fmt: skip
    unrolled, scanned = (plans[s].update_cost()[0] for s in (False, True))
    assert workload.model.num_layers == 4
    assert scanned == pytest.approx(unrolled, rel=0.05)
