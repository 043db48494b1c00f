"""The demo's experiment tables: every system over several GRPO seeds, with intervals.

The compare stage (`corea_jax.cascade.compare`) runs one cascade per trained SLM (the warm start
and each reward x seed) and writes each one's `questions.jsonl`. This module reads them back and
aggregates over seeds:

- `SYSTEMS`: each reward preset's rows in the paper's naming, with the deferral signal each uses
  (`system_specs` expands them over seeds; the warm start has one seed only: it is not trained).
- `seed_arrays`: one system's test-split arrays per seed, at the tau its own calibration split
  chose for that seed (the paper's rule unless configured otherwise).
- `headline_rows`: per system, mean +- SD over seeds and the 95% interval of a two-level
  bootstrap (questions shared by every seed, seeds with replacement:
  `corea_jax.scoring.stats.seed_question_bootstrap`) of SLM pass@1, the signal's ECE
  (equal-width and equal-mass), AUROC, AURC, the cascade's pass@1, LLM% and cost vs LLM-only;
  the simulated LLM's own pass@1 and the cascade's expected pass@1 (the LLM's chance of being
  right is known) beside the sampled one; the number of distinct stated confidences.
- `seed_rows`: the same figures per seed (the seed table).
- `level_rows`: per difficulty level, each system's ECE and AUROC within the level, and the
  within-level AUROC pooled over levels (does the confidence track the question, or only its
  level?).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from corea_jax.cascade.sweep import defer_mask
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
    ),  # fmt: skip
    "brier": (("Brier-SLM-Verb", "verbalized"), ("Brier-SLM-AvgProb", "avgprob")),
    "corea": (("COREA", "verbalized"), ("COREA-SLM-AvgProb", "avgprob")),
    "corea_l2": (("COREA-L2", "verbalized"),),
    "corea_kl": (("COREA-KL", "verbalized"),),
}
SIGNAL_KEYS = {"verbalized": "confidence", "avgprob": "avgprob", "probe": "probe",
               "router": "router"}  # fmt: skip
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
    """The compare stage's `systems`: (unique row name, SLM, signal) per spec."""
    return tuple((f"{s['system']}|{s['seed']}", s["slm"], s["signal"]) for s in specs)


def _rows(compare_dir: Path, slm: str) -> list[dict]:
    path = compare_dir / "slms" / slm / "questions.jsonl"
    return _read_json(path, lines=True)


def _summary(compare_dir: Path, slm: str) -> dict:
    return _read_json(compare_dir / "slms" / slm / "summary.json", lines=False)


def _read_json(path: Path, lines: bool):
    """A JSON (or JSON-lines) file, parsed once per version of it: every table, claim and plot
    reads the same few files, each several MB; a rewritten file (new size or mtime) is read
    again. Callers must not modify what it returns."""
    stat = path.stat()
    return _parsed(str(path), stat.st_mtime_ns, stat.st_size, lines)


@functools.lru_cache(maxsize=64)
def _parsed(path: str, mtime_ns: int, size: int, lines: bool):
    del mtime_ns, size  # part of the cache key only
    text = Path(path).read_text()
    return [json.loads(x) for x in text.splitlines()] if lines else json.loads(text)


def seed_arrays(compare_dir: Path, spec: dict, group: str, rule: str) -> dict:
    """One (system, seed)'s test-split arrays [Q] (in question order) at its chosen tau.

    Keys: id, conf (NaN = invalid), slm_correct, llm_correct, cascade_correct, cascade_cost,
    llm_cost, defer, p_llm (NaN when the LLM is real), level; and tau, fitted (the signal had a
    probe fitted, or needs none)."""
    summary = _summary(compare_dir, spec["slm"])
    rows = [r for r in _rows(compare_dir, spec["slm"]) if r["split"] == "test"]
    if group != "all":
        rows = [r for r in rows if r["dataset"] == group]
    entry = summary["groups"][group]["signals"][spec["signal"]]
    choice = next(c for c in entry["choices"] if c["rule"].split("(")[0] == rule)
    key = SIGNAL_KEYS[spec["signal"]]
    conf = np.array([np.nan if r.get(key) is None else r[key] for r in rows], float)
    invalid = summary.get("invalid_confidence", 0.0)
    defer = defer_mask(conf, choice["tau"], invalid)
    slm_ok = np.array([r["slm_correct"] for r in rows], bool)
    llm_ok = np.array([r["llm_correct"] for r in rows], bool)
    slm_cost = np.array([r["slm_cost"] for r in rows])
    kept = (np.array([r["slm_prefill_cost"] for r in rows]) if spec["signal"] == "router"
            else slm_cost)  # fmt: skip
    llm_cost = np.array([r["llm_cost"] for r in rows])
    fitted = summary.get("fitted_signals", {}).get(spec["signal"], {}).get("fitted", True)
    return {
        "id": np.array([f"{r['dataset']}/{r['id']}/{r.get('sample', 0)}" for r in rows]),
        "conf": conf,
        "slm_correct": slm_ok,
        "llm_correct": llm_ok,
        "defer": defer,
        "cascade_correct": np.where(defer, llm_ok, slm_ok),
        "cascade_cost": np.where(defer, kept + llm_cost, slm_cost),
        "llm_cost": llm_cost,
        "slm_cost": slm_cost,
        "p_llm": np.array([r.get("llm_p_correct", np.nan) for r in rows], float),
        "level": np.array([r.get("level") or "" for r in rows]),
        "tau": choice["tau"],
        "fitted": fitted,
        "invalid": invalid,
    }


_ECE = jax.jit(metrics.expected_calibration_error)
_ECE_MASS = jax.jit(metrics.equal_mass_ece)
_AUROC = jax.jit(metrics.auroc)
_AURC = jax.jit(metrics.aurc)


def _effective(conf, invalid):
    return np.where(np.isnan(conf), invalid, conf).astype(np.float32)


# Statistics of one seed's arrays: name -> (function of arrays, argument keys).
STATISTICS = {
    "slm_pass": (lambda c: float(np.mean(c)), ("slm_correct",)),
    "ece": (lambda q, c: float(_ECE(q, c)), ("conf_eff", "slm_correct")),
    "ece_mass": (lambda q, c: float(_ECE_MASS(q, c)), ("conf_eff", "slm_correct")),
    "auroc": (
        lambda q, c: float(_AUROC(q, c)) if 0 < c.mean() < 1 else math.nan,
        ("conf_eff", "slm_correct"),
    ),  # fmt: skip
    "aurc": (lambda q, c: float(_AURC(q, c)), ("conf_eff", "slm_correct")),
    "cascade_pass": (lambda c: float(np.mean(c)), ("cascade_correct",)),
    "pass_vs_llm": (
        lambda c, l: float(np.mean(c) - np.mean(l)),
        ("cascade_correct", "llm_correct"),
    ),  # fmt: skip
    "llm_fraction": (lambda d: float(np.mean(d)), ("defer",)),
    "cost_vs_llm": (lambda c, l: float(np.mean(c) / np.mean(l) - 1), ("cascade_cost", "llm_cost")),
}


def _with_effective(arrays: dict) -> dict:
    return arrays | {"conf_eff": _effective(arrays["conf"], arrays["invalid"])}


def system_stats(per_seed: list[dict], n_boot: int = 1000, seed: int = 0) -> dict:
    """{statistic: {"interval", "mean", "sd", "per_seed"}} over a system's seeds."""
    arrays = [_with_effective(a) for a in per_seed]
    out = {}
    for name, (fn, keys) in STATISTICS.items():
        values = [fn(*(a[k] for k in keys)) for a in arrays]
        interval = seed_question_bootstrap(
            fn, [tuple(a[k] for k in keys) for a in arrays], n_boot=n_boot, seed=seed
        )
        mean, sd = mean_sd(values)
        out[name] = {"interval": interval.to_dict(), "mean": mean, "sd": sd, "per_seed": values}
    return out


def headline_rows(compare_dir: Path, specs: list[dict], group: str, rule: str,
                  n_boot: int = 1000) -> list[dict]:  # fmt: skip
    """One row per system (seeds aggregated), in `specs` order."""
    rows = []
    for system in dict.fromkeys(s["system"] for s in specs):
        mine = [s for s in specs if s["system"] == system]
        per_seed = [seed_arrays(compare_dir, s, group, rule) for s in mine]
        if not all(a["fitted"] for a in per_seed):
            rows.append({"system": system, "preset": mine[0]["preset"], "fitted": False,
                         "seeds": [s["seed"] for s in mine]})  # fmt: skip
            continue
        ids = per_seed[0]["id"]
        if any(not np.array_equal(a["id"], ids) for a in per_seed):
            raise ValueError(f"{system}: seeds were tested on different questions")
        p_llm = per_seed[0]["p_llm"]
        expected = [float(np.where(a["defer"], a["p_llm"], a["slm_correct"]).mean())
                    for a in per_seed]  # fmt: skip
        rows.append({
            "system": system,
            "preset": mine[0]["preset"],
            "signal": mine[0]["signal"],
            "fitted": True,
            "seeds": [s["seed"] for s in mine],
            "n_test": int(ids.size),
            "taus": [a["tau"] for a in per_seed],
            "distinct_values": [int(np.unique(a["conf"][~np.isnan(a["conf"])]).size)
                                for a in per_seed],  # fmt: skip
            "llm_pass": float(per_seed[0]["llm_correct"].mean()),
            "llm_pass_interval": bootstrap(
                np.mean, per_seed[0]["llm_correct"].astype(float), n_boot=n_boot
            ).to_dict(),
            "llm_expected_pass": None if np.isnan(p_llm).any() else float(p_llm.mean()),
            "cascade_expected_pass": None if np.isnan(p_llm).any() else float(np.mean(expected)),
            "stats": system_stats(per_seed, n_boot=n_boot),
        })  # fmt: skip
    return rows


def paired_stat(compare_dir, specs_a, specs_b, group, rule, fn, keys, n_boot=1000) -> Interval:
    """The interval of mean_s [fn(a_s) - fn(b_s)] for two systems trained with the same seeds
    (seed s of one paired with seed s of the other; questions shared)."""
    by_seed_b = {s["seed"]: s for s in specs_b}
    arrays = []
    for spec in specs_a:
        a = _with_effective(seed_arrays(compare_dir, spec, group, rule))
        b = _with_effective(seed_arrays(compare_dir, by_seed_b[spec["seed"]], group, rule))
        arrays.append(tuple(a[k] for k in keys) + tuple(b[k] for k in keys))
    n = len(keys)

    def diff(*xs):
        return fn(*xs[:n]) - fn(*xs[n:])

    return seed_question_bootstrap(diff, arrays, n_boot=n_boot)


def level_rows(compare_dir: Path, specs: list[dict], group: str, rule: str) -> list[dict]:
    """Per verbalized system (seeds pooled as a mean): per level ECE / AUROC / accuracy, and the
    within-level AUROC (pairs from one level only) against the pooled AUROC."""
    out = []
    for system in dict.fromkeys(s["system"] for s in specs if s["signal"] == "verbalized"):
        per_seed = [seed_arrays(compare_dir, s, group, rule) for s in specs
                    if s["system"] == system]  # fmt: skip
        levels = per_seed[0]["level"]
        if not levels.size or not levels.all():
            return []
        tables = [metrics.per_group_calibration(_effective(a["conf"], a["invalid"]),
                                                a["slm_correct"], list(levels))
                  for a in per_seed]  # fmt: skip
        by_level = {}
        for level in tables[0]["groups"]:
            cells = [t["groups"][level] for t in tables]
            by_level[level] = {
                key: _mean([c[key] for c in cells])
                for key in ("n", "accuracy", "mean_confidence", "ece", "auroc")
            }
        out.append({
            "system": system,
            "levels": by_level,
            "auroc": _mean([t["auroc"] for t in tables]),
            "within_level_auroc": _mean([t["within_group_auroc"] for t in tables]),
        })  # fmt: skip
    return out


def _mean(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else None
