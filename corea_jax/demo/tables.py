"""The demo's experiment tables: every system over several GRPO seeds, with intervals.

The compare stage (`corea_jax.cascade.compare`) runs one cascade per trained SLM (the warm start
and each reward x seed) and hands back each one's per-question rows (`SLMResult`). This module
aggregates them over seeds, in memory:

- `SYSTEMS`: each reward preset's rows in the paper's naming, with the deferral signal each uses
  (`system_specs` expands them over seeds; the warm start has one seed only: it is not trained).
  "level" is the demo's own baseline (no cascade computes it): this SLM's accuracy per
  difficulty level on the calibration split, as a confidence. Every question prints its level
  ("[steps s, digits d]"), so this is what the prompt alone gives away.
- `seed_arrays`: one system's test-split arrays per seed at the paper's tau (tau = the LLM's
  pass@1 on the calibration split), for one view of the LLM (`LLMView`).
- `headline_rows`: per system, mean +- SD over seeds and the 95% interval of a two-level
  bootstrap (questions shared by every seed, seeds with replacement:
  `corea_jax.scoring.stats.seed_question_bootstrap`) of SLM pass@1, the signal's ECE
  (equal-width and equal-mass), AUROC, within-level AUROC, AURC, the cascade's pass@1, LLM% and
  cost vs LLM-only; the number of distinct stated confidences.
- `level_rows`: per difficulty level, each system's accuracy, mean confidence, ECE and AUROC.

**A simulated LLM without luck.** A simulated LLM is right on a question with a known
probability p, so one draw of it is luck: the seed-0 draw of the shipped demo was 85.6% right
against an expected 83.1% (z about 3.6). Where p is known (`LLMView.expected`), tau and the
LLM-only comparator come from it: tau is the mean p over the calibration split, the cascade's
pass@1 counts p for a deferred question, and LLM-only's pass@1 is the mean p. The sampled
figures (tau from the draw, the draw's answers) stay beside them (`*_sampled` statistics). With
a real LLM there is no p and both are the sampled figures.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from corea_jax.cascade.sweep import defer_mask, effective_confidence
from corea_jax.scoring import metrics
from corea_jax.scoring.stats import Interval, bootstrap, mean_sd, seed_question_bootstrap

# Each preset's systems: (row name, signal). RLVR carries the paper's non-verbal baselines.
SYSTEMS = {
    "warm": (("SLM-Verb", "verbalized"), ("SLM-AvgProb", "avgprob")),
    "rlvr": (
        ("RLVR-SLM-Verb", "verbalized"),
        ("RLVR-SLM-AvgProb", "avgprob"),
        ("RLVR-SLM-Probe", "probe"),
        ("Router+RLVR-SLM", "router"),
        ("RLVR-SLM-Level lookup", "level"),
    ),  # fmt: skip
    "brier": (("Brier-SLM-Verb", "verbalized"), ("Brier-SLM-AvgProb", "avgprob")),
    "corea": (("COREA", "verbalized"), ("COREA-SLM-AvgProb", "avgprob")),
    "corea_l2": (("COREA-L2", "verbalized"),),
    "corea_kl": (("COREA-KL", "verbalized"),),
    "corea_split": (("COREA-split (beyond the paper)", "verbalized"),),
}
SIGNAL_KEYS = {"verbalized": "confidence", "avgprob": "avgprob", "probe": "probe",
               "router": "router"}  # fmt: skip
DEMO_SIGNALS = ("level",)  # computed here from the rows, not by a cascade
RULE = "llm_pass"  # the paper's tau rule: tau = the LLM's pass@1 on the calibration split
WARM = "warm"


def slm_name(preset: str, seed: int | None) -> str:
    """The SLM's name in the compare stage: "warm", or "corea-s1"."""
    return WARM if preset == WARM else f"{preset}-s{seed}"


def system_specs(policies: Sequence[str], seeds: Sequence[int]) -> list[dict]:
    """One spec per (system, seed): {"system", "preset", "signal", "seed", "slm"}."""
    specs = []
    for preset in (WARM, *policies):
        for system, signal in SYSTEMS[preset]:
            for seed in (0,) if preset == WARM else seeds:
                specs.append({"system": system, "preset": preset, "signal": signal,
                              "seed": seed, "slm": slm_name(preset, seed)})  # fmt: skip
    return specs


def compare_systems(specs: list[dict]) -> tuple[tuple[str, str, str], ...]:
    """The compare stage's `systems`: (unique row name, SLM, signal) per spec it computes."""
    return tuple((f"{s['system']}|{s['seed']}", s["slm"], s["signal"]) for s in specs
                 if s["signal"] not in DEMO_SIGNALS)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SLMResult:
    """One SLM's cascade, as `corea_jax.cascade.compare.run(..., with_rows=True)` hands it
    back: its per-question rows (those of `questions.jsonl`) and its summary."""

    rows: tuple[dict, ...]
    summary: dict


@dataclasses.dataclass(frozen=True)
class LLMView:
    """How the LLM's side is counted. `p`: `{(dataset, id): probability of being right}` (an
    expected view: tau and LLM-only from it), or None (the sampled answers)."""

    name: str
    p: Mapping[tuple[str, str], float] | None = None

    @property
    def expected(self) -> bool:
        return self.p is not None


SAMPLED = LLMView("sampled")


def expected_view(results: Mapping[str, SLMResult], name: str = "expected") -> LLMView:
    """The simulated LLM's known per-question accuracy (`llm_p_correct` of the rows), or the
    sampled view when the LLM is real (no row carries it)."""
    rows = next(iter(results.values())).rows
    if not rows or any(r.get("llm_p_correct") is None for r in rows):
        return SAMPLED
    return LLMView(name, {(r["dataset"], r["id"]): float(r["llm_p_correct"]) for r in rows})


def level_lookup(levels: np.ndarray, correct: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    """The "level" confidence `[N]`: the accuracy of the calibration rows of each row's level
    (the calibration split's overall accuracy for a level it lacks)."""
    fallback = float(correct[calibration].mean())
    table = {}
    for level in np.unique(levels):
        here = calibration & (levels == level)
        table[level] = float(correct[here].mean()) if here.any() else fallback
    return np.array([table[x] for x in levels], np.float64)


def seed_arrays(result: SLMResult, spec: dict, group: str, llm: LLMView = SAMPLED) -> dict:
    """One (system, seed)'s test-split arrays [Q] (in question order) at the paper's tau.

    Keys: id, conf (NaN = invalid), slm_correct, llm_correct (the draw), llm_outcome (p under an
    expected view, else the draw; float), defer, cascade_correct (float: expected under an
    expected view), cascade_cost, llm_cost, slm_cost, level, level_id; and the sampled
    counterparts `defer_sampled`, `cascade_sampled` (tau and answers from the draw); tau,
    tau_sampled, fitted (the signal had a probe fitted, or needs none), invalid."""
    summary = result.summary
    rows = [r for r in result.rows if group == "all" or r["dataset"] == group]
    split = np.array([r["split"] for r in rows])
    calibration, test = split == "calibration", split == "test"
    slm_ok = np.array([r["slm_correct"] for r in rows], bool)
    llm_ok = np.array([r["llm_correct"] for r in rows], bool)
    levels = np.array([r.get("level") or "" for r in rows])
    if spec["signal"] == "level":
        conf = level_lookup(levels, slm_ok, calibration)
    else:
        key = SIGNAL_KEYS[spec["signal"]]
        conf = np.array([np.nan if r.get(key) is None else r[key] for r in rows], float)
    invalid = summary.get("invalid_confidence", 0.0)
    if llm.expected:
        outcome = np.array([llm.p[(r["dataset"], r["id"])] for r in rows], float)
    else:
        outcome = llm_ok.astype(float)
    tau = float(outcome[calibration].mean())  # the paper's rule (`sweep.tau_at_llm_pass`)
    tau_sampled = float(llm_ok[calibration].mean())
    slm_cost = np.array([r["slm_cost"] for r in rows])
    kept = (np.array([r["slm_prefill_cost"] for r in rows]) if spec["signal"] == "router"
            else slm_cost)  # fmt: skip
    llm_cost = np.array([r["llm_cost"] for r in rows])
    defer = defer_mask(conf, tau, invalid)
    defer_sampled = defer_mask(conf, tau_sampled, invalid)
    fitted = summary.get("fitted_signals", {}).get(spec["signal"], {}).get("fitted", True)
    _, level_id = np.unique(levels, return_inverse=True)
    out = {
        "id": np.array([f"{r['dataset']}/{r['id']}/{r.get('sample', 0)}" for r in rows]),
        "conf": conf,
        "slm_correct": slm_ok,
        "llm_correct": llm_ok,
        "llm_outcome": outcome,
        "defer": defer,
        "cascade_correct": np.where(defer, outcome, slm_ok),
        "cascade_cost": np.where(defer, kept + llm_cost, slm_cost),
        "defer_sampled": defer_sampled,
        "cascade_sampled": np.where(defer_sampled, llm_ok, slm_ok).astype(float),
        "llm_cost": llm_cost,
        "slm_cost": slm_cost,
        "level": levels,
        "level_id": level_id.astype(np.int32),
    }
    out = {k: v[test] for k, v in out.items()}
    return out | {"tau": tau, "tau_sampled": tau_sampled, "fitted": fitted, "invalid": invalid}


_ECE = jax.jit(metrics.expected_calibration_error)
_ECE_MASS = jax.jit(metrics.equal_mass_ece)
_AUROC = jax.jit(metrics.auroc)
_WITHIN = jax.jit(metrics.within_group_auroc)
_AURC = jax.jit(metrics.aurc)
_BRIER = jax.jit(metrics.brier_score)


def effective(conf, invalid):
    """`sweep.effective_confidence` (invalid read as the deferral rule reads it), float32 for
    the jitted metrics."""
    return effective_confidence(conf, invalid).astype(np.float32)


def _auroc(q, c):
    return float(_AUROC(q, c)) if 0 < c.mean() < 1 else math.nan


def _within(q, c, g):
    value = float(_WITHIN(q, c, g))
    return value if np.isfinite(value) else math.nan


def _mean(x):
    return float(np.mean(x))


# Statistics of one seed's arrays: name -> (function of arrays, argument keys).
STATISTICS = {
    "slm_pass": (_mean, ("slm_correct",)),
    "ece": (lambda q, c: float(_ECE(q, c)), ("conf_eff", "slm_correct")),
    "ece_mass": (lambda q, c: float(_ECE_MASS(q, c)), ("conf_eff", "slm_correct")),
    "brier": (lambda q, c: float(_BRIER(q, c)), ("conf_eff", "slm_correct")),
    "auroc": (_auroc, ("conf_eff", "slm_correct")),
    "within_level_auroc": (_within, ("conf_eff", "slm_correct", "level_id")),
    "aurc": (lambda q, c: float(_AURC(q, c)), ("conf_eff", "slm_correct")),
    "cascade_pass": (_mean, ("cascade_correct",)),
    "pass_vs_llm": (lambda c, o: _mean(c) - _mean(o), ("cascade_correct", "llm_outcome")),
    "llm_fraction": (_mean, ("defer",)),
    "cost_vs_llm": (lambda c, l: _mean(c) / _mean(l) - 1, ("cascade_cost", "llm_cost")),
    "cascade_pass_sampled": (_mean, ("cascade_sampled",)),
    "pass_vs_llm_sampled": (lambda c, o: _mean(c) - _mean(o), ("cascade_sampled", "llm_correct")),
}


def with_effective(arrays: dict) -> dict:
    return arrays | {"conf_eff": effective(arrays["conf"], arrays["invalid"])}


def system_stats(per_seed: list[dict], n_boot: int = 1000, seed: int = 0,
                 names: Sequence[str] | None = None) -> dict:  # fmt: skip
    """{statistic: {"interval", "mean", "sd", "per_seed"}} over a system's seeds."""
    arrays = [with_effective(a) for a in per_seed]
    out = {}
    for name in names or STATISTICS:
        fn, keys = STATISTICS[name]
        values = [fn(*(a[k] for k in keys)) for a in arrays]
        interval = seed_question_bootstrap(
            fn, [tuple(a[k] for k in keys) for a in arrays], n_boot=n_boot, seed=seed
        )
        mean, sd = mean_sd(values)
        out[name] = {"interval": interval.to_dict(), "mean": mean, "sd": sd, "per_seed": values}
    return out


def by_system(specs: list[dict]) -> dict[str, list[dict]]:
    """`{system: its specs, one per seed}` in `specs` order."""
    out: dict[str, list[dict]] = {}
    for spec in specs:
        out.setdefault(spec["system"], []).append(spec)
    return out


def system_arrays(results, specs: list[dict], group: str, llm: LLMView = SAMPLED) -> list[dict]:
    """`seed_arrays` of each spec (one system's seeds), checked to share their test questions."""
    per_seed = [seed_arrays(results[s["slm"]], s, group, llm) for s in specs]
    ids = per_seed[0]["id"]
    if any(not np.array_equal(a["id"], ids) for a in per_seed):
        raise ValueError(f"{specs[0]['system']}: seeds were tested on different questions")
    return per_seed


def headline_rows(results: Mapping[str, SLMResult], specs: list[dict], group: str,
                  llm: LLMView = SAMPLED, n_boot: int = 1000) -> list[dict]:  # fmt: skip
    """One row per system (seeds aggregated), in `specs` order."""
    rows = []
    for system, mine in by_system(specs).items():
        per_seed = system_arrays(results, mine, group, llm)
        if not all(a["fitted"] for a in per_seed):
            rows.append({"system": system, "preset": mine[0]["preset"], "fitted": False,
                         "signal": mine[0]["signal"],
                         "seeds": [s["seed"] for s in mine]})  # fmt: skip
            continue
        first = per_seed[0]
        rows.append({
            "system": system,
            "preset": mine[0]["preset"],
            "signal": mine[0]["signal"],
            "fitted": True,
            "seeds": [s["seed"] for s in mine],
            "n_test": int(first["id"].size),
            "taus": [a["tau"] for a in per_seed],
            "taus_sampled": [a["tau_sampled"] for a in per_seed],
            "distinct_values": [int(np.unique(a["conf"][~np.isnan(a["conf"])]).size)
                                for a in per_seed],  # fmt: skip
            "llm_pass": _mean(first["llm_outcome"]),
            "llm_pass_interval": bootstrap(np.mean, first["llm_outcome"], n_boot=n_boot).to_dict(),
            "llm_pass_sampled": _mean(first["llm_correct"]),
            "llm_pass_sampled_interval": bootstrap(
                np.mean, first["llm_correct"].astype(float), n_boot=n_boot
            ).to_dict(),
            "llm_view": llm.name,
            "stats": system_stats(per_seed, n_boot=n_boot),
        })  # fmt: skip
    return rows


def paired_stat(results, specs_a, specs_b, group, fn, keys, llm: LLMView = SAMPLED,
                n_boot=1000) -> Interval:  # fmt: skip
    """The interval of mean_s [fn(a_s) - fn(b_s)] for two systems trained with the same seeds
    (seed s of one paired with seed s of the other; questions shared)."""
    by_seed_b = {s["seed"]: s for s in specs_b}
    arrays = []
    for spec in specs_a:
        a = with_effective(seed_arrays(results[spec["slm"]], spec, group, llm))
        other = by_seed_b[spec["seed"]]
        b = with_effective(seed_arrays(results[other["slm"]], other, group, llm))
        arrays.append(tuple(a[k] for k in keys) + tuple(b[k] for k in keys))
    n = len(keys)

    def diff(*xs):
        return fn(*xs[:n]) - fn(*xs[n:])

    return seed_question_bootstrap(diff, arrays, n_boot=n_boot)


def level_rows(results: Mapping[str, SLMResult], specs: list[dict], group: str) -> list[dict]:
    """Per verbalized system and the level lookup (seeds pooled as a mean): per level
    accuracy, mean confidence, ECE and AUROC, and the within-level AUROC against the pooled."""
    out = []
    shown = ("verbalized", "level")
    for system, mine in by_system(specs).items():
        if mine[0]["signal"] not in shown:
            continue
        per_seed = [seed_arrays(results[s["slm"]], s, group) for s in mine]
        levels = per_seed[0]["level"]
        if not levels.size or not levels.all():
            return []
        tables = [metrics.per_group_calibration(effective(a["conf"], a["invalid"]),
                                                a["slm_correct"], list(levels))
                  for a in per_seed]  # fmt: skip
        by_level = {}
        for level in tables[0]["groups"]:
            cells = [t["groups"][level] for t in tables]
            by_level[level] = {
                key: mean_of([c[key] for c in cells])
                for key in ("n", "accuracy", "mean_confidence", "ece", "auroc")
            }
        out.append({
            "system": system,
            "levels": by_level,
            "auroc": mean_of([t["auroc"] for t in tables]),
            "within_level_auroc": mean_of([t["within_group_auroc"] for t in tables]),
        })  # fmt: skip
    return out


def mean_of(values):
    """The mean of the finite values, or None when there are none."""
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else None
