"""Device mesh and the logical-axis rule table.

Everything is sharded over one `('data', 'fsdp', 'tensor')` mesh. Arrays name their dimensions
with logical axes (`batch`, `vocab`, `embed`, `heads`, `kv_heads`, `mlp`, `norm`), and the short
rule table below maps each to mesh axes: Megatron-style tensor parallelism over heads, MLP width
and vocab; FSDP over the model dimension; the batch over data x fsdp. A mesh axis that does not
divide a dimension is dropped for that array (it is replicated along that axis) instead of
failing, so a small model still runs on a wide mesh.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from corea_jax.errors import CoreaError

MESH_AXES = ("data", "fsdp", "tensor")

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

DEFAULT_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("norm", None),
)


def make_mesh(shape: Sequence[int] = (1, -1, 1), devices=None) -> Mesh:
    """A ('data', 'fsdp', 'tensor') mesh; one entry may be -1 to take the remaining devices."""
    devices = list(jax.devices() if devices is None else devices)
    shape = list(shape)
    if len(shape) != 3:
        raise CoreaError(f"mesh shape {tuple(shape)}: needs 3 entries for {MESH_AXES}")
    if shape.count(-1) > 1:
        raise CoreaError(f"mesh shape {tuple(shape)}: at most one entry may be -1")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        shape[shape.index(-1)] = len(devices) // known if known else 0
    if math.prod(shape) != len(devices):
        raise CoreaError(
            f"mesh shape {tuple(shape)} needs {math.prod(shape)} devices, have {len(devices)}"
        )
    return Mesh(np.asarray(devices, dtype=object).reshape(shape), MESH_AXES)


def logical_to_spec(
    names: Sequence[str | None],
    rules: Rules = DEFAULT_RULES,
    mesh: Mesh | None = None,
    shape: Sequence[int] | None = None,
) -> PartitionSpec:
    """Logical axis names -> PartitionSpec; with mesh and shape, drops non-dividing mesh axes."""
    table = dict(rules)
    used: set[str] = set()
    spec = []
    for i, name in enumerate(names):
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        kept = []
        for axis in axes:
            if axis in used:
                continue
            size = mesh.shape[axis] if mesh is not None else 1
            done = math.prod(mesh.shape[a] for a in kept) if mesh is not None else 1
            if shape is not None and shape[i] % (done * size):
                continue
            kept.append(axis)
        used.update(kept)
        spec.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return PartitionSpec(*spec)


def named_sharding(
    mesh: Mesh, names: Sequence[str | None], shape: Sequence[int], rules: Rules = DEFAULT_RULES
) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(names, rules, mesh, shape))


def put_global(x, sharding: NamedSharding) -> jax.Array:
    """Host array (the same on every process) -> a global array on `sharding`.

    Each process copies only the slices its own devices hold, so this works unchanged on one
    host and on many (where `jax.device_put` of host data to a multi-process sharding does not).
    """
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def to_host(x: jax.Array) -> np.ndarray:
    """A (possibly multi-process) global array -> its full value as NumPy, on every process."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.array(jax.device_get(x))
    if x.sharding.is_fully_replicated:
        return np.array(x.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.array(multihost_utils.process_allgather(x, tiled=True))
