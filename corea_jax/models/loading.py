"""HF model directories in and out: `config.json` + safetensors (single or sharded) <-> CausalLM.

Loading builds the model abstractly (`nnx.eval_shape`, nothing allocated), then fills every
parameter straight from memory-mapped checkpoint tensors onto its final sharding with
`jax.make_array_from_callback`: each device receives only its slice, so a sharded model never
needs a full replicated host copy. The loader fails loudly: every model parameter must be found,
every checkpoint key must be used or listed in `params.IGNORED_KEYS`, and shapes must match;
the error names the keys, tensors and files.

Saving writes into a temporary directory beside the target and swaps it in only when complete,
so a failure never leaves a half-written model where a good one was.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, SingleDeviceSharding

from corea_jax.atomic_files import replace_dir
from corea_jax.errors import CoreaError
from corea_jax.models import params as param_table
from corea_jax.models import safetensors_io
from corea_jax.models.config import ModelConfig
from corea_jax.models.transformer import CausalLM
from corea_jax.parallel.sharding import DEFAULT_RULES, Rules, named_sharding, to_host

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
    "generation_config.json",
)


def checkpoint_tensors(model_dir: str | Path) -> dict[str, safetensors_io.TensorInfo]:
    """All tensors of a HF model directory (sharded via the index file, or one file)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CoreaError(f"{model_dir}: model directory not found")
    index = model_dir / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise CoreaError(f"{index}: not a valid safetensors index ({e})") from e
        if not isinstance(weight_map, dict) or not all(
            isinstance(v, str) for v in weight_map.values()
        ):
            raise CoreaError(f"{index}: not a valid safetensors index (weight_map)")
        files = sorted(set(weight_map.values()))
    elif (model_dir / SINGLE_FILE).is_file():
        weight_map, files = None, [SINGLE_FILE]
    else:
        files = sorted(p.name for p in model_dir.glob("*.safetensors"))
        weight_map = None
        if not files:
            raise CoreaError(f"{model_dir}: no *.safetensors weights found")
    tensors: dict[str, safetensors_io.TensorInfo] = {}
    for name in files:
        path = model_dir / name
        if not path.is_file():
            raise CoreaError(f"{index}: lists shard {name}, which is missing")
        for key, info in safetensors_io.read_header(path).items():
            if key in tensors:
                raise CoreaError(f"{path}: tensor {key} also appears in {tensors[key].path.name}")
            tensors[key] = info
    if weight_map is not None:
        missing = sorted(k for k in weight_map if k not in tensors)
        if missing:
            raise CoreaError(f"{index}: keys not found in their shards: {_few(missing)}")
    return tensors


def abstract_model(cfg: ModelConfig, dtype=jnp.float32) -> CausalLM:
    """The model with ShapeDtypeStructs for parameters (no memory allocated)."""
    return nnx.eval_shape(lambda: CausalLM(cfg, dtype=dtype, rngs=nnx.Rngs(0)))


def param_shardings(model: CausalLM, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> nnx.State:
    """A State of NamedShardings matching the model's parameters (logical axes -> mesh)."""
    state = nnx.state(model, nnx.Param)
    flat = {
        path: named_sharding(mesh, param_table.logical_axes(path), var.shape, rules)
        for path, var in _flat_params(state)
    }
    return _with_values(state, flat)


def load_model(
    model_dir: str | Path,
    *,
    dtype=jnp.float32,
    mesh: Mesh | None = None,
    rules: Rules = DEFAULT_RULES,
) -> CausalLM:
    """Loads a HF model directory into a CausalLM in `dtype`, placed on `mesh` if given."""
    model_dir = Path(model_dir)
    cfg = ModelConfig.from_hf_config(model_dir)
    tensors = checkpoint_tensors(model_dir)
    model = abstract_model(cfg, dtype)
    graphdef, state = nnx.split(model)
    flat = dict(_flat_params(state))
    by_key = {param_table.hf_name(path): path for path in flat}

    missing = sorted(k for k in by_key if k not in tensors)
    unexpected = sorted(
        k
        for k in tensors
        if k not in by_key and not param_table.is_ignored(k, cfg.tie_word_embeddings)
    )
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {_few(unexpected)}")
        raise CoreaError(f"{model_dir}: checkpoint does not match the model: " + "; ".join(parts))

    np_dtype = np.dtype(jnp.dtype(dtype))
    values = {}
    for key, path in by_key.items():
        info, var = tensors[key], flat[path]
        transpose = param_table.is_transposed(path)
        stored = tuple(reversed(info.shape)) if transpose else info.shape
        if stored != tuple(var.shape):
            raise CoreaError(
                f"{info.path}: tensor {key} has shape {info.shape}, the model expects "
                f"{tuple(reversed(var.shape)) if transpose else tuple(var.shape)}"
            )
        if mesh is None:
            sharding = SingleDeviceSharding(jax.devices()[0])
        else:
            sharding = named_sharding(mesh, param_table.logical_axes(path), var.shape, rules)
        values[path] = _array_from_checkpoint(key, info, transpose, np_dtype, sharding)
    return nnx.merge(graphdef, _with_values(state, values))


def _array_from_checkpoint(key, info, transpose, np_dtype, sharding) -> jax.Array:
    try:
        view = info.open()
    except (OSError, ValueError) as e:  # the file changed since its header was read
        raise CoreaError(f"{info.path}: cannot read tensor {key} ({e})") from e
    if transpose:
        view = view.T

    def fetch(index):
        return np.asarray(view[index]).astype(np_dtype)

    return jax.make_array_from_callback(view.shape, sharding, fetch)


def save_model(
    model: CausalLM,
    out_dir: str | Path,
    *,
    dtype=None,
    max_shard_bytes: int = 5 * 2**30,
    tokenizer_dir: str | Path | None = None,
) -> Path:
    """Writes `config.json` + safetensors (sharded above `max_shard_bytes`) to `out_dir`.

    `dtype` (default: the parameters' own) is the stored dtype. Tokenizer and generation files
    are copied from `tokenizer_dir` when given. On several processes every process must call
    this (gathering is collective); only process 0 writes.
    """
    out_dir = Path(out_dir)
    cfg: ModelConfig = model.config
    tensors: dict[str, np.ndarray] = {}
    for path, var in _flat_params(nnx.state(model, nnx.Param)):
        array = to_host(var[...])
        if dtype is not None:
            array = array.astype(np.dtype(jnp.dtype(dtype)))
        tensors[param_table.hf_name(path)] = array.T if param_table.is_transposed(path) else array
    if jax.process_index() != 0:
        return out_dir
    dtype_name = str(next(iter(tensors.values())).dtype)  # "float32", "bfloat16", ...

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        (tmp / "config.json").write_text(json.dumps(cfg.to_hf_config(dtype_name), indent=2))
        shards = _plan_shards(tensors, max_shard_bytes)
        if len(shards) == 1:
            safetensors_io.write_file(tmp / SINGLE_FILE, shards[0])
        else:
            weight_map = {}
            for i, shard in enumerate(shards):
                name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                safetensors_io.write_file(tmp / name, shard)
                weight_map.update(dict.fromkeys(shard, name))
            total = sum(a.nbytes for a in tensors.values())
            index = {
                "metadata": {"total_size": total},
                "weight_map": dict(sorted(weight_map.items())),
            }
            (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2))
        if tokenizer_dir is not None:
            for name in TOKENIZER_FILES:
                src = Path(tokenizer_dir) / name
                if src.is_file():
                    shutil.copy2(src, tmp / name)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _plan_shards(tensors: dict[str, np.ndarray], max_bytes: int) -> list[dict[str, np.ndarray]]:
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for key in sorted(tensors):
        nbytes = tensors[key].nbytes
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensors[key]
        size += nbytes
    return shards


def _flat_params(state: nnx.State):
    """(path, variable) pairs of a State, paths as tuples like ('model', 'layers', 0, ...)."""
    return [(tuple(path), var) for path, var in nnx.to_flat_state(state)]


def _with_values(state: nnx.State, values: dict[tuple, object]) -> nnx.State:
    pure = nnx.to_pure_dict(state)
    for path, value in values.items():
        node = pure
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
    nnx.replace_by_pure_dict(state, pure)
    return state


def _few(keys: list[str], n: int = 8) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")
