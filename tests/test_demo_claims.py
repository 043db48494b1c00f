"""The demo's claims are decided by whole intervals: constructed policies that clearly meet,
clearly miss, and cannot be told apart."""

import numpy as np

from corea_jax.cli.demo_claims import claim_lines


def _policy(confidence, correct):
    ids = np.array([f"synthetic/q{i}" for i in range(len(correct))])
    return {"id": ids, "confidence": np.asarray(confidence, np.float32), "correct": correct}


def _cascade(cost, gap):
    iv = lambda p, lo, hi: {"point": p, "low": lo, "high": hi, "level": 0.95}  # noqa: E731
    return {"tau": 0.8, "test_intervals": {"cost_vs_llm": iv(*cost), "pass_vs_llm": iv(*gap)}}


def test_claims_follow_the_intervals():
    rng = np.random.default_rng(0)
    n = 2000
    truth = rng.random(n)
    correct = rng.random(n) < truth
    calibrated = _policy(truth, correct)  # COREA: states its real chance
    overconfident = _policy(np.full(n, 0.95), correct)  # RLVR: the same answers, always 0.95
    arrays = {"corea": calibrated, "rlvr": overconfident, "brier": calibrated}
    cascades = {
        "corea": _cascade((-0.3, -0.35, -0.25), (0.0, -0.01, 0.01)),
        "brier": _cascade((-0.15, -0.3, -0.05), (0.0, -0.01, 0.01)),
        "rlvr": _cascade((-0.7, -0.72, -0.68), (-0.25, -0.3, -0.2)),
    }
    lines = claim_lines(arrays, cascades)
    by = {line.split(":")[0]: line for line in lines}
    assert by["- ECE(COREA) - ECE(RLVR)"].endswith("**met**")
    assert by["- ECE(COREA) - ECE(Brier)"].endswith("**met**")  # identical: interval holds 0
    assert by["- SLM pass@1, COREA - RLVR"].endswith("**met**")  # the same answers
    assert lines[-3].startswith("- corea cascade") and lines[-3].endswith("**met**")
    assert lines[-2].startswith("- brier cascade") and lines[-2].endswith("**not resolved**")
    assert lines[-1].startswith("- rlvr cascade") and lines[-1].endswith("**not met**")
