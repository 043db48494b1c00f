"""Compile time and step time of the update's forward + backward: layers unrolled vs `lax.scan`.

Issue 15 asks whether scanning the decoder layers (one traced layer, stacked parameters) cuts
compile time at 28-32 layers without slowing the step. Three variants of the same function:
"unrolled" is `CausalLM` as it is; "scanned" is `ComputeConfig(scan_layers=True)` (the layer
parameters are stacked inside the step, then one `lax.scan`); "prestacked" takes parameters
already stored stacked on a leading L axis, i.e. what `nnx.scan`-built layers would compile.

    python benchmarks/compile_time.py                       # 28 layers, small width, CPU
    python benchmarks/compile_time.py --layers 32 --remat full
    # TPU, ahead of time (libtpu importable; no TPU needed):
    TPU_ACCELERATOR_TYPE=v5litepod-4 TPU_WORKER_HOSTNAMES=localhost JAX_PLATFORMS= \\
      python benchmarks/compile_time.py --preset Qwen/Qwen2.5-7B-Instruct --topology v5e:2x2 \\
      --rows 4 --length 512

Prints one line per variant: lower and compile seconds, and (on a real backend) the step time.

Measured 2026-11-30 on the shared 2-core CPU under load (single runs, seconds lower + compile):
    small, 28 layers, 4 x 256, float32, CPU:  unrolled 10-23, scanned 14, prestacked 6-13;
        step times equal within the noise (5-12 s a step, load-dominated)
    Qwen2.5-7B, 4 x 512, bf16, remat full, AOT for v5p:2x2x1 (FSDP over 4):
        unrolled 343 s (1.55 GiB temporaries), scanned 98 s (9.48 GiB: the stacked weights and
        gradients), prestacked 145 s (1.16 GiB)
Those "scanned" figures predate the sharding constraint on the stacked copies (`CausalLM.
_scan_layers` now pins each to its parameter's own FSDP / tensor sharding on the mesh, which
this script now passes; before, the compiler chose their layout). With it, the Qwen2.5-1.5B
paper update on `v5e:2x4` needs 8.58 GiB per chip where the unrolled one is refused at 16.2 GiB
of temporaries (`corea-jax plan`, README "Will it fit?"), hence `scan_layers` is the paper
configs' default (its step time on hardware is unmeasured). Storing the layers stacked
(nnx.scan) would save the copies, but changes the parameter tree the loader and sampler read.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from corea_jax.models import ModelConfig, param_shardings, preset
from corea_jax.models import params as param_table
from corea_jax.models.compute import ComputeConfig
from corea_jax.models.rope import inverse_frequencies, rope_tables
from corea_jax.models.transformer import CausalLM, DecoderLayer, causal_mask, positions_from_mask
from corea_jax.parallel.sharding import make_mesh, named_sharding

SMALL = ModelConfig(
    family="qwen2",
    vocab_size=2048,
    hidden_size=256,
    intermediate_size=512,
    num_layers=28,
    num_heads=4,
    num_kv_heads=2,
    head_dim=64,
    qkv_bias=True,
    tie_word_embeddings=True,
)


def unrolled_loss(graphdef, compute):
    def loss(params, tokens, valid):
        model = nnx.merge(graphdef, params)
        hidden, _ = model.hidden_states(tokens, positions_from_mask(valid), valid, compute=compute)
        logp = jax.nn.log_softmax(model.logits(hidden[:, :-1]))
        return -jnp.sum(jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1))

    return loss


def scanned_loss(shell_graphdef, layer_graphdef, cfg: ModelConfig, compute):
    """`shell` is the model without layers (embeddings, final norm, head); `layers` stacked."""
    policy = compute.remat_policy()

    def loss(params, tokens, valid):
        shell_params, layer_params = params
        model = nnx.merge(shell_graphdef, shell_params)
        x = model.model.embed_tokens(tokens)
        inv_freq = inverse_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
        rope = rope_tables(positions_from_mask(valid), inv_freq, x.dtype)
        mask = causal_mask(valid)

        def step(x, layer_state):
            return nnx.merge(layer_graphdef, layer_state)(x, rope, mask, None, 0)[0], None

        if policy is not None:
            step = jax.checkpoint(step, policy=policy)
        x, _ = jax.lax.scan(step, x, layer_params)
        logp = jax.nn.log_softmax(model.logits(model.model.norm(x)[:, :-1]))
        return -jnp.sum(jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1))

    return loss


def _variants(cfg: ModelConfig, dtype, compute, abstract: bool):
    make = (lambda f: nnx.eval_shape(f)) if abstract else (lambda f: f())
    model = make(lambda: CausalLM(cfg, dtype=dtype, rngs=nnx.Rngs(0)))
    graphdef, params = nnx.split(model)
    shell = make(lambda: CausalLM(dataclasses.replace(cfg, num_layers=0), dtype=dtype))
    shell_graphdef, shell_params = nnx.split(shell)
    layer = make(lambda: DecoderLayer(cfg, dtype, nnx.Rngs(0)))
    layer_graphdef, layer_state = nnx.split(layer)
    stack = (
        (lambda x: jax.ShapeDtypeStruct((cfg.num_layers, *x.shape), x.dtype))
        if abstract
        else (lambda x: jnp.broadcast_to(x, (cfg.num_layers, *x.shape)))
    )
    stacked = jax.tree.map(stack, layer_state)
    return {
        "unrolled": (unrolled_loss(graphdef, compute), params, model),
        "scanned": (
            unrolled_loss(graphdef, dataclasses.replace(compute, scan_layers=True)),
            params,
            model,
        ),
        "prestacked": (
            scanned_loss(shell_graphdef, layer_graphdef, cfg, compute),
            (shell_params, stacked),
            shell,
        ),
    }


def _stacked_shardings(shell, stacked, mesh):
    """The scanned variant's shardings: the shell's as usual, each stacked layer parameter as
    its unstacked self (the table in `models.params`) with the layer axis unsharded."""

    def one(path, leaf):
        names = tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))
        return named_sharding(mesh, (None, *param_table.logical_axes(names)), leaf.shape)

    return param_shardings(shell, mesh), jax.tree_util.tree_map_with_path(one, stacked)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=None, help="HF id of a model preset (default: small)")
    parser.add_argument("--layers", type=int, default=None)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--remat", default="none")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--topology", default=None, help="TPU topology for an AOT compile")
    parser.add_argument("--only", choices=("unrolled", "scanned", "prestacked"), default=None)
    args = parser.parse_args()

    cfg = preset(args.preset) if args.preset else SMALL
    if args.layers:
        cfg = dataclasses.replace(cfg, num_layers=args.layers)
    dtype = jnp.dtype(args.dtype)
    # The xla attention in both variants: the comparison is about the layer loop.
    compute = ComputeConfig(remat=args.remat, attention="xla")
    r, t = args.rows, args.length
    if args.topology:
        from jax.experimental import topologies

        devices = topologies.get_topology_desc(platform="tpu", topology_name=args.topology).devices
        mesh = make_mesh((1, -1, 1), devices)
    else:
        mesh = make_mesh((1, 1, 1), jax.devices()[:1])
    # The mesh: the scanned variant pins its stacked copies to the parameters' shardings on it.
    compute = dataclasses.replace(compute, mesh=mesh)
    rows = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    abstract = args.topology is not None
    print(f"{cfg.num_layers} layers, D={cfg.hidden_size}, rows {r} x {t} slots, {args.dtype},")
    print(f"remat {args.remat}, {len(mesh.devices.flat)} {mesh.devices.flat[0].platform} devices")
    for name, (loss, params, model) in _variants(cfg, dtype, compute, abstract).items():
        if args.only not in (None, name):
            continue
        if name != "prestacked":
            shardings = param_shardings(model, mesh)
        else:
            shardings = _stacked_shardings(model, params[1], mesh)
        tokens = jnp.ones((r, t), jnp.int32)
        valid = jnp.ones((r, t), bool)
        if abstract:
            spec = lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)  # noqa: E731
            params = jax.tree.map(spec, params, shardings)
            tokens = jax.ShapeDtypeStruct((r, t), jnp.int32, sharding=rows)
            valid = jax.ShapeDtypeStruct((r, t), jnp.bool_, sharding=rows)
        start = time.perf_counter()
        lowered = jax.jit(jax.value_and_grad(loss)).lower(params, tokens, valid)
        lowered_s = time.perf_counter() - start
        compiled = lowered.compile()
        compile_s = time.perf_counter() - start - lowered_s
        line = f"{name:10s} lower {lowered_s:6.1f} s  compile {compile_s:6.1f} s"
        memory = compiled.memory_analysis()
        if memory is not None:
            line += f"  temp {memory.temp_size_in_bytes / 2**30:6.2f} GiB"
        if not abstract:
            jax.block_until_ready(compiled(params, tokens, valid))
            start = time.perf_counter()
            for _ in range(3):
                jax.block_until_ready(compiled(params, tokens, valid))
            line += f"  step {(time.perf_counter() - start) / 3 * 1e3:7.1f} ms"
        print(line, flush=True)


if __name__ == "__main__":
    main()
