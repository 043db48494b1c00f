"""Batch layout and shardings: rows split over the mesh, SFT traces padded to 16, one jitted
update per batch shape."""

import numpy as np
import optax
from jax.sharding import PartitionSpec

from corea_jax.parallel.sharding import make_mesh
from corea_jax.rl import grpo
from corea_jax.rl.batch import StepCache, batch_shardings, reference_tokens, sft_batch


def test_rows_are_split_and_positions_are_not():
    mesh = make_mesh((2, 2, 2))
    s = batch_shardings(mesh, rows=8, prompt_slots=16, completion_len=32, with_ref=False)
    assert s.tokens.spec == s.valid.spec == PartitionSpec(("data", "fsdp"), None)
    assert s.weights.spec == s.old_logprobs.spec == PartitionSpec(("data", "fsdp"), None)
    # Advantages are per token [R, C] (segment-wise advantages), rows split like the weights.
    assert s.advantages.spec == PartitionSpec(("data", "fsdp"), None)
    assert s.ref_logprobs is None
    assert batch_shardings(mesh, 8, 16, 32, with_ref=True).ref_logprobs == s.weights


def test_sft_batch_pads_completions_to_a_multiple_of_16():
    prompts = [[5, 6], [7]]
    references = [[1, 2, 3], list(range(10, 27))]  # 3 and 17 tokens -> C = 32
    batch, metrics = sft_batch(prompts, references, prompt_slots=4, pad_id=0)
    assert batch.tokens.shape == (2, 4 + 32) and batch.weights.shape == (2, 32)
    np.testing.assert_array_equal(batch.tokens[0, :7], [0, 0, 5, 6, 1, 2, 3])
    np.testing.assert_array_equal(batch.valid[1].sum(), 1 + 17)
    assert not batch.advantages.any() and metrics == {"completion_length": 10.0}
    np.testing.assert_allclose(batch.weights.sum(), 1.0)  # token mean over the whole batch


def test_reference_tokens_end_with_eos():
    class Tok:
        eos_token_id = 99

        def __call__(self, text, add_special_tokens):
            assert not add_special_tokens
            return {"input_ids": [len(w) for w in text.split()]}

    assert reference_tokens(Tok(), ["ab c", "d"]) == [[2, 1, 99], [1, 99]]
    Tok.eos_token_id = None
    assert reference_tokens(Tok(), ["ab"]) == [[2]]


def test_step_cache_builds_once_per_shape(monkeypatch):
    built = []

    def fake_jit(graphdef, state_shardings, shardings, mesh, **options):
        built.append(options["micro_batches"])
        return object()

    monkeypatch.setattr("corea_jax.rl.batch.jit_train_step", fake_jit)
    cache = StepCache(None, None, make_mesh((1, -1, 1)), prompt_slots=16, with_ref=False,
                      optimizer=optax.sgd(1.0), loss_config=grpo.LossConfig(), mode="grpo",
                      micro_batches=2)  # fmt: skip
    first = cache(8, 32)
    assert cache(8, 32) is first
    shardings, _ = cache(8, 48)
    assert built == [2, 2]  # two shapes, two programs
    assert shardings == batch_shardings(cache.mesh, 8, 16, 48, with_ref=False)
