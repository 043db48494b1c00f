"""The demo's experiment tables and claims, on a constructed compare stage with two seeds:
claims follow whole intervals over questions and seeds; seed figures are the per-seed values."""

import json

import numpy as np
import pytest

from corea_jax.cli.demo_claims import claim_lines
from corea_jax.cli.demo_experiment import headline_rows, level_rows, seed_arrays, system_specs

N, SEEDS, TAU = 2000, (0, 1), 0.8


def _write_slm(root, name, confidence, correct, levels):
    rows = [
        {"dataset": "synthetic", "id": f"q{i}", "sample": 0, "split": "test",
         "confidence": float(confidence[i]), "avgprob": 0.5, "slm_correct": bool(correct[i]),
         "llm_correct": True, "slm_cost": 0.1, "slm_prefill_cost": 0.01, "llm_cost": 1.0,
         "llm_p_correct": 0.9, "level": levels[i]}
        for i in range(N)
    ]  # fmt: skip
    choice = {"rule": "llm_pass", "tau": TAU}
    summary = {
        "invalid_confidence": 0.0,
        "fitted_signals": {},
        "groups": {"synthetic": {"signals": {s: {"choices": [choice]}
                                             for s in ("verbalized", "avgprob")}}},
    }  # fmt: skip
    d = root / "slms" / name
    d.mkdir(parents=True)
    (d / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "summary.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(0)
    truth = rng.random(N)  # each question's chance of being answered right
    levels = np.where(truth > 0.5, "hard", "easy")
    _write_slm(root, "warm", np.full(N, 0.9), rng.random(N) < truth, levels)
    for seed in SEEDS:
        correct = rng.random(N) < truth
        _write_slm(root, f"corea-s{seed}", truth, correct, levels)  # states its real chance
        _write_slm(root, f"brier-s{seed}", truth, correct, levels)
        _write_slm(root, f"rlvr-s{seed}", np.full(N, 0.95), correct, levels)  # same answers
    return root


SPECS = [s for s in system_specs(("rlvr", "brier", "corea"), SEEDS)
         if s["signal"] in ("verbalized", "avgprob")]  # fmt: skip


def test_headline_rows_aggregate_the_seeds(compare_dir):
    rows = headline_rows(compare_dir, SPECS, "synthetic", "llm_pass", n_boot=200)
    by = {r["system"]: r for r in rows}
    assert list(by)[:2] == ["SLM-Verb", "SLM-AvgProb"] and by["SLM-Verb"]["seeds"] == [0]
    corea = by["COREA"]
    assert corea["seeds"] == list(SEEDS) and corea["n_test"] == N
    per_seed = [seed_arrays(compare_dir, s, "synthetic", "llm_pass")
                for s in SPECS if s["system"] == "COREA"]  # fmt: skip
    cascade = [np.where(a["conf"] < TAU, True, a["slm_correct"]).mean() for a in per_seed]
    stat = corea["stats"]["cascade_pass"]
    assert stat["per_seed"] == pytest.approx(cascade)
    assert stat["mean"] == pytest.approx(np.mean(cascade))
    assert stat["sd"] == pytest.approx(np.std(cascade, ddof=1))
    iv = stat["interval"]
    assert iv["low"] < stat["mean"] < iv["high"]
    # Expected accuracy: the LLM's known 0.9 where deferred.
    expected = np.mean([np.where(a["conf"] < TAU, 0.9, a["slm_correct"]).mean()
                        for a in per_seed])  # fmt: skip
    assert corea["cascade_expected_pass"] == pytest.approx(expected)
    assert corea["distinct_values"][0] > 1000 and by["RLVR-SLM-Verb"]["distinct_values"] == [1, 1]


def test_claims_follow_the_intervals(compare_dir):
    rows = headline_rows(compare_dir, SPECS, "synthetic", "llm_pass", n_boot=200)
    lines = claim_lines(compare_dir, SPECS, "synthetic", "llm_pass", rows, n_boot=200)
    by = {line.split(":")[0]: line for line in lines}
    assert by["- ECE(COREA) - ECE(RLVR-SLM-Verb)"].endswith("**met**")
    assert by["- ECE(COREA) - ECE(Brier-SLM-Verb)"].endswith("**met**")  # identical: holds 0
    assert by["- SLM pass@1, COREA - RLVR-SLM-Verb"].endswith("**met**")  # the same answers
    # RLVR states 0.95 >= tau: it never defers: -90% cost, but 50 points below the LLM.
    rlvr = next(line for line in lines if line.startswith("- RLVR-SLM-Verb cascade"))
    assert "-90.0 [-90.0, -90.0]%" in rlvr and rlvr.endswith("**not met**")
    # COREA defers the 80% of questions below 0.8: about -10% cost, short of -20%.
    corea = next(line for line in lines if line.startswith("- COREA cascade"))
    assert "target <= -20%: not met" in corea and corea.endswith("**not met**")


def test_level_rows_separate_level_from_question(compare_dir):
    specs = [s for s in SPECS if s["system"] in ("COREA", "RLVR-SLM-Verb")]
    rows = {r["system"]: r for r in level_rows(compare_dir, specs, "synthetic", "llm_pass")}
    # COREA's confidence is each question's own chance: it ranks within a level too.
    assert rows["COREA"]["within_level_auroc"] > 0.6
    assert rows["RLVR-SLM-Verb"]["within_level_auroc"] == pytest.approx(0.5)
    assert set(rows["COREA"]["levels"]) == {"easy", "hard"}
