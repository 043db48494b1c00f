"""How the decoder computes a full-sequence forward (the update's), not what it computes.

`ComputeConfig` is the one place the trainer chooses memory-saving variants of the same
function; the default is today's path bit for bit (no remat, the XLA attention on CPU). The
sampler never passes one: a forward with a KV cache always takes the XLA attention and is never
rematerialised (it is never differentiated).

    remat      "none" | "full" | "save_dots" | "save_all_dots": `nnx.remat` of each decoder
               layer with the policy of that name (`REMAT_POLICIES`). "save_dots" keeps the
               projections' outputs (matmuls with no batch dimension) and recomputes norms,
               RoPE, attention and activations in the backward pass; "full" keeps only each
               layer's input.
    attention  "auto" | "xla" | "dot_product_attention" | "splash" (`corea_jax.models.attention`).
               "auto" picks by the platform of `mesh` (or JAX's default backend): gpu ->
               dot_product_attention (cuDNN for bf16/fp16 inputs; its XLA reference for
               float32, which cuDNN does not take), tpu -> splash, otherwise xla. The fused kernels
               need the [B, T] `valid` mask, not a [B, T, S] one (`CausalLM.hidden_states`).
    scan_layers  Run the layers as one `lax.scan` over their parameters stacked inside the
               update (`CausalLM._scan_layers`): less than half the compile time at 28 layers,
               but the stacked weights and their stacked gradients are two extra copies of
               the (sharded) layer parameters per device; Qwen2.5-7B on 4 v5p chips: 9.5 GiB
               of temporaries against 1.6 (benchmarks/compile_time.py). Off by default.
    mesh       The mesh splash runs its `shard_map` over (rows over the batch axes of `rules`,
               heads over "tensor"); None runs it on one device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from corea_jax.errors import CoreaError
from corea_jax.models import attention as kernels
from corea_jax.parallel.sharding import DEFAULT_RULES, Rules

REMAT_POLICIES: dict[str, Callable[..., bool]] = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "save_dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    # Also keeps the attention products (batched matmuls): with the "xla" attention those are
    # the [T, S] scores, so this only pays with a fused kernel.
    "save_all_dots": jax.checkpoint_policies.checkpoint_dots,
}
REMAT_CHOICES = ("none", *REMAT_POLICIES)
ATTENTION_CHOICES = ("auto", "xla", "dot_product_attention", "splash")
AUTO_ATTENTION = {"gpu": "dot_product_attention", "tpu": "splash"}  # anything else: "xla"

# (query [B, T, N, H], key, value [B, T, K, H], valid [B, T]) -> [B, T, N, H]
AttentionFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class ComputeConfig:
    remat: str = "none"
    attention: str = "auto"
    scan_layers: bool = False
    mesh: Mesh | None = None
    rules: Rules = DEFAULT_RULES

    def __post_init__(self):
        if self.remat not in REMAT_CHOICES:
            raise CoreaError(f"remat {self.remat!r}: expected one of {REMAT_CHOICES}")
        if self.attention not in ATTENTION_CHOICES:
            raise CoreaError(f"attention {self.attention!r}: expected one of {ATTENTION_CHOICES}")

    @property
    def platform(self) -> str:
        if self.mesh is not None:
            return self.mesh.devices.flat[0].platform
        return jax.default_backend()

    def attention_name(self) -> str:
        """The concrete attention of this config ("auto" resolved by platform)."""
        if self.attention == "auto":
            return AUTO_ATTENTION.get(self.platform, "xla")
        return self.attention

    def attention_fn(self) -> AttentionFn | None:
        """The fused kernel to call, or None for the decoder's own XLA attention."""
        name = self.attention_name()
        if name == "xla":
            return None
        if name == "dot_product_attention":
            gpu = self.platform == "gpu"

            def attend(q, k, v, valid):
                # cuDNN's flash attention takes 16-bit inputs only; float32 runs the reference.
                cudnn = gpu and q.dtype in (jnp.bfloat16, jnp.float16)
                return kernels.dot_product_attention(q, k, v, valid, "cudnn" if cudnn else "xla")

            return attend
        return lambda q, k, v, valid: kernels.splash_attention(
            q, k, v, valid, self.mesh, rules=self.rules
        )

    def remat_policy(self) -> Callable[..., bool] | None:
        """The checkpoint policy of each layer, or None for no rematerialisation."""
        return REMAT_POLICIES.get(self.remat)
