"""User-defined reward terms for tests (given to the trainer as `module:function`)."""

import jax.numpy as jnp


def nan_reward(correct, confidence, format_ok, texts):
    del confidence, format_ok, texts
    return jnp.full(correct.shape, jnp.nan)


def length_bonus(correct, confidence, format_ok, texts):
    del confidence, format_ok
    return jnp.asarray([len(t) / 1000 for t in texts]).reshape(correct.shape)


def overconfidence_penalty(correct, confidence, format_ok, texts, weight=0.5, above=0.9):
    """The README's example: -weight for a wrong answer stated with confidence > `above`.

    All arguments are [B, G] arrays (texts: the B*G completions, row-major); returns [B, G].
    """
    del texts
    wrong_and_sure = format_ok & ~correct.astype(bool) & (confidence > above)
    return -weight * wrong_and_sure.astype(jnp.float32)


def wrong_shape(correct, confidence, format_ok, texts):
    del confidence, format_ok, texts
    return jnp.zeros(correct.shape[0] + 1)
