"""Teacher-forced token log-probs and entropies, computed a chunk of the sequence at a time.

The update needs, for every completion slot, log p(target) and (as a metric) the entropy of the
next-token distribution. Done in one go that is float32 logits [R, C, V]: at R = 8 rows of
C = 2048 slots over Qwen2.5's 152k vocabulary, 10 GB, and the backward pass keeps it again.
Here the C slots are cut into chunks of `chunk`; a `lax.map` applies the LM head and a float32
log-softmax to one chunk at a time, under `jax.checkpoint` with nothing saved, so the backward
recomputes each chunk's logits instead of keeping them: the peak is one chunk, [R, chunk, V].

The log-prob kernel is `sampling.methods.token_logprobs` (the sampler's); the entropy is the
same expression as `rl.grpo.token_entropy`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from corea_jax.sampling.methods import token_logprobs


def token_entropy(logits: jax.Array) -> jax.Array:
    """logits [..., V] -> entropy of the softmax [...], in nats."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def chunked_token_logprobs(
    model, hidden: jax.Array, targets: jax.Array, chunk: int
) -> tuple[jax.Array, jax.Array]:
    """hidden [R, C, D] (the states that predict `targets`), targets [R, C] int ->
    (log-probs [R, C], entropies [R, C]), float32, never holding more than [R, chunk, V] logits.

    `model` is a `CausalLM` (its `logits`: the LM head, float32 out). C need not divide by
    `chunk`: the last chunk is padded with slots that are cut off again. `chunk >= C` is one
    chunk (still rematerialised); `chunk <= 0` is the plain unchunked computation, op for op.
    """
    if chunk <= 0:
        logits = model.logits(hidden)
        return token_logprobs(logits, targets), token_entropy(logits)
    r, c, d = hidden.shape
    chunk = max(1, min(chunk, c))
    n = -(-c // chunk)
    pad = n * chunk - c
    if pad:
        hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
        targets = jnp.pad(targets, ((0, 0), (0, pad)))
    # Chunks lead, for lax.map: [n, R, chunk, ...].
    hidden = hidden.reshape(r, n, chunk, d).swapaxes(0, 1)
    targets = targets.reshape(r, n, chunk).swapaxes(0, 1)

    @jax.checkpoint
    def one_chunk(xs):
        h, t = xs
        logits = model.logits(h)  # [R, chunk, V] float32
        return token_logprobs(logits, t), token_entropy(logits)

    logprobs, entropy = jax.lax.map(one_chunk, (hidden, targets))
    unchunk = lambda x: x.swapaxes(0, 1).reshape(r, n * chunk)[:, :c]  # noqa: E731
    return unchunk(logprobs), unchunk(entropy)
