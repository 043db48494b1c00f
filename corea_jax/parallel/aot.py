"""Ahead-of-time compilation for hardware this host does not have: named topologies, chip
figures, and what a compiled program says about itself.

`topology_devices("v5p:2x2x4")` returns the 16 device descriptions of that TPU slice (libtpu
builds them; no TPU is needed), or this host's devices for "local". A program jitted over a
mesh of them, lowered with `jax.ShapeDtypeStruct` inputs and compiled, is the program the slice
would run: `compiled.memory_analysis()` gives its per-device bytes and `cost_analysis()` its
per-device FLOPs and HBM traffic. The TPU compiler refuses a program whose temporaries exceed a
chip's HBM (RESOURCE_EXHAUSTED); `compile_program` turns that into `OutOfMemory` with the
compiler's own figures.

Two caveats every figure carries. XLA's cost analysis counts a loop body once, whatever its
trip count (a `lax.scan` over micro-batches, a `while_loop` over decode steps): callers scale
by the trip count. And it sees no time in collectives or host transfers: the roofline
(`roofline_seconds`) is a lower bound, max(FLOPs / peak, bytes / bandwidth).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time

import jax

from corea_jax.errors import CoreaError

# Per-chip figures. `hbm_bytes` is what the TPU compiler reports as available (its
# RESOURCE_EXHAUSTED message for an oversized program, libtpu 0.0.42), a little under the
# vendor's capacity; peaks are dense bf16 matmul FLOP/s. Sources:
#   TPU v4:  cloud.google.com/tpu/docs/v4   (32 GiB HBM2, 1,200 GB/s, 275 TFLOP/s)
#   TPU v5e: cloud.google.com/tpu/docs/v5e  (16 GiB HBM2, 819 GB/s, 197 TFLOP/s)
#   TPU v5p: cloud.google.com/tpu/docs/v5p  (95 GiB HBM2e, 2,765 GB/s, 459 TFLOP/s)
#   TPU v6e: cloud.google.com/tpu/docs/v6e  (32 GiB HBM, 1,640 GB/s, 918 TFLOP/s)
#   H100 SXM / H200 / A100 80GB: NVIDIA datasheets (80 GB, 3.35 TB/s; 141 GB, 4.8 TB/s;
#   80 GB, 2.04 TB/s; dense bf16 989 / 989 / 312 TFLOP/s). GPU memory comes from the device
#   itself (`memory_stats()["bytes_limit"]`) when it reports one.
GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    hbm_bytes: float  # usable per device
    peak_flops: float  # dense bf16 FLOP/s per device
    hbm_bandwidth: float  # bytes/s per device


CHIPS: dict[str, Chip] = {  # keyed by the start of `device.device_kind`
    "TPU v4": Chip("TPU v4", 30.75 * GIB, 275e12, 1.2e12),
    "TPU v5 lite": Chip("TPU v5e", 15.75 * GIB, 197e12, 819e9),
    "TPU v5e": Chip("TPU v5e", 15.75 * GIB, 197e12, 819e9),
    "TPU v5p": Chip("TPU v5p", 95.74 * GIB, 459e12, 2.765e12),
    "TPU v5": Chip("TPU v5p", 95.74 * GIB, 459e12, 2.765e12),  # v5p's device_kind
    "TPU v6 lite": Chip("TPU v6e", 31.25 * GIB, 918e12, 1.64e12),
    "TPU v6e": Chip("TPU v6e", 31.25 * GIB, 918e12, 1.64e12),
    "NVIDIA H100": Chip("NVIDIA H100", 80e9, 989e12, 3.35e12),
    "NVIDIA H200": Chip("NVIDIA H200", 141e9, 989e12, 4.8e12),
    "NVIDIA A100": Chip("NVIDIA A100", 80e9, 312e12, 2.04e12),
}

# libtpu reads these at start-up and warns, on a host without TPUs, when they are missing; and
# it refuses to load in a second process (a test, another plan) unless told it may.
TPU_QUIET_ENV = {
    "TPU_ACCELERATOR_TYPE": "v5litepod-4",
    "TPU_WORKER_HOSTNAMES": "localhost",
    "ALLOW_MULTIPLE_LIBTPU_LOAD": "1",
}
TPU_GENERATIONS = ("v4", "v5e", "v5p", "v6e")
# v4 and v5p chips have two TensorCores; "megacore" makes each chip one JAX device.
_MEGACORE = ("v4", "v5p")


def chip_of(device) -> Chip:
    """The figures of `device`'s chip; a GPU's memory is the device's own limit if it has one."""
    kind = device.device_kind
    # Longest prefix first: "TPU v5 lite" must not match "TPU v5" (v5p).
    for prefix in sorted(CHIPS, key=len, reverse=True):
        if kind.startswith(prefix):
            chip = CHIPS[prefix]
            break
    else:
        raise CoreaError(f"no chip figures for device kind {kind!r}; known: {', '.join(CHIPS)}")
    limit = _device_memory_limit(device)
    return dataclasses.replace(chip, hbm_bytes=limit) if limit else chip


def _device_memory_limit(device) -> int | None:
    try:
        stats = device.memory_stats() or {}
    except Exception:  # topology devices are not addressable: no stats
        return None
    return stats.get("bytes_limit")


def parse_topology(name: str) -> tuple[str, tuple[int, ...]]:
    """ "v5p:2x2x4" -> ("v5p", (2, 2, 4)); the generation must be one of TPU_GENERATIONS."""
    match = re.fullmatch(r"(v\w+):(\d+(?:x\d+){1,2})", name)
    if not match or match.group(1) not in TPU_GENERATIONS:
        raise CoreaError(
            f"topology {name!r}: expected 'local' or GEN:AxB[xC] with GEN one of "
            f"{', '.join(TPU_GENERATIONS)} (e.g. v5e:2x2, v5p:2x2x4)"
        )
    return match.group(1), tuple(int(d) for d in match.group(2).split("x"))


def topology_devices(name: str) -> list:
    """The devices of a named TPU slice (descriptions only), or this host's for "local"."""
    if name == "local":
        return list(jax.devices())
    generation, dims = parse_topology(name)
    for key, value in TPU_QUIET_ENV.items():
        os.environ.setdefault(key, value)
    from jax.experimental import topologies

    options: dict = {}
    if generation in _MEGACORE:
        options["chip_config_name"] = "megacore"
    if math.prod(dims) < 4:  # libtpu's default host is 2x2 chips; a smaller slice is one host
        options["chips_per_host_bounds"] = (*dims, 1, 1)[:3]
    try:
        desc = topologies.get_topology_desc(platform="tpu", topology_name=name, **options)
    except Exception as e:  # libtpu missing, or a shape it does not know
        raise CoreaError(f"topology {name}: {_first_line(e)} (needs libtpu: pip install "
                         "'corea-jax[tpu]')") from e  # fmt: skip
    return list(desc.devices)


@dataclasses.dataclass(frozen=True)
class ProgramCost:
    """What one compiled program needs per device. Bytes are per device; `flops` and
    `bytes_accessed` count each loop body once (see the module docstring)."""

    name: str
    argument_bytes: int
    output_bytes: int
    alias_bytes: int  # outputs written into donated arguments
    temp_bytes: int
    flops: float
    bytes_accessed: float
    compile_seconds: float

    @property
    def total_bytes(self) -> int:
        """Live at the peak: arguments, outputs not aliased to them, temporaries."""
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes


class OutOfMemory(CoreaError):
    """The compiler refused a program: it needs more memory than a device has."""


def compile_program(name: str, jitted, *args) -> ProgramCost:
    """Lowers `jitted` with abstract `args`, compiles it for their devices, and reads its
    memory and cost analyses. Raises OutOfMemory when the compiler refuses it for size."""
    t0 = time.perf_counter()
    try:
        compiled = jitted.lower(*args).compile()
    except Exception as e:
        if "RESOURCE_EXHAUSTED" in str(e) or "Ran out of memory" in str(e):
            seconds = time.perf_counter() - t0
            raise OutOfMemory(f"{name} {_oom_summary(e)} (compiler, after {seconds:.0f} s)") from e
        raise
    seconds = time.perf_counter() - t0
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = (cost[0] if cost else {}) if isinstance(cost, list) else (cost or {})
    return ProgramCost(
        name=name,
        argument_bytes=int(memory.argument_size_in_bytes),
        output_bytes=int(memory.output_size_in_bytes),
        alias_bytes=int(memory.alias_size_in_bytes),
        temp_bytes=int(memory.temp_size_in_bytes),
        flops=float(cost.get("flops", 0.0)),
        bytes_accessed=float(cost.get("bytes accessed", 0.0)),
        compile_seconds=seconds,
    )


def roofline_seconds(flops: float, bytes_accessed: float, chip: Chip) -> float:
    """A lower bound on a program's time on one device: compute- or bandwidth-bound."""
    return max(flops / chip.peak_flops, bytes_accessed / chip.hbm_bandwidth)


_TPU_OOM = re.compile(r"temporaries \(([\d.]+)G\) exceeds available HBM \(([\d.]+)G\)")


def _oom_summary(error: Exception) -> str:
    """The TPU compiler's RESOURCE_EXHAUSTED message, short; other messages' first line."""
    found = _TPU_OOM.search(str(error))
    if found is None:
        return _first_line(error)
    return f"needs {found[1]} GiB of temporaries per device, {found[2]} GiB available"


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
