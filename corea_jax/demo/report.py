"""The demo's `report.md`: markdown tables of `experiment.json`'s figures, and the text around them.

Pure functions of the experiment dict (`corea_jax.demo.experiment`): nothing here reads a file.
"""

from __future__ import annotations

import numpy as np

from corea_jax.scoring.stats import Interval


def _iv(stat: dict, scale=100.0, digits=1, signed=False) -> str:
    iv = Interval(**stat["interval"])
    sd = stat["sd"]
    sd_text = "" if sd is None or not np.isfinite(sd) else f" +- {abs(sd) * scale:.{digits}f}"
    return f"{iv.format(scale=scale, digits=digits, signed=signed)}{sd_text}"


def _f3(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def headline_table(rows: list[dict], simulated: bool) -> str:
    """The headline: one row per system, mean over seeds [95% interval] +- SD over seeds."""
    llm = "sim. LLM" if simulated else "LLM"
    lines = [
        "| system | seeds | SLM pass@1 % | ECE | ECE (equal-mass) | Brier | AUROC | "
        f"within-level AUROC | AURC | cascade pass@1 % | LLM % | cost vs {llm}-only % | "
        "distinct conf. |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r["fitted"]:
            lines.append(f"| {r['system']} | {len(r['seeds'])} | not fitted |" + " |" * 10)
            continue
        st = r["stats"]
        lines.append(
            f"| {r['system']} | {len(r['seeds'])} | {_iv(st['slm_pass'])} | "
            f"{_iv(st['ece'], 1, 3)} | {_iv(st['ece_mass'], 1, 3)} | {_iv(st['brier'], 1, 3)} | "
            f"{_iv(st['auroc'], 1, 3)} | {_iv(st['within_level_auroc'], 1, 3)} | "
            f"{_iv(st['aurc'], 1, 3)} | {_iv(st['cascade_pass'])} | {_iv(st['llm_fraction'])} | "
            f"{_iv(st['cost_vs_llm'], signed=True)} | "
            f"{'/'.join(str(d) for d in r['distinct_values'])} |"
        )
    return "\n".join(lines)


def seed_table(rows: list[dict]) -> str:
    """Each verbalized system's figures seed by seed (tau from the LLM's expected pass@1 where
    it is known; the sampled draw's tau beside it)."""
    lines = ["| system | seed | tau | tau (draw) | SLM pass@1 % | ECE | AUROC | "
             "cascade pass@1 % | LLM % | cost vs LLM-only % |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if not r["fitted"] or r["signal"] != "verbalized":
            continue
        st = r["stats"]
        for i, seed in enumerate(r["seeds"]):
            v = {k: st[k]["per_seed"][i] for k in st}
            lines.append(
                f"| {r['system']} | {seed} | {r['taus'][i]:.3f} | {r['taus_sampled'][i]:.3f} | "
                f"{100 * v['slm_pass']:.1f} | {v['ece']:.3f} | {v['auroc']:.3f} | "
                f"{100 * v['cascade_pass']:.1f} | {100 * v['llm_fraction']:.1f} | "
                f"{100 * v['cost_vs_llm']:+.1f} |"
            )
    return "\n".join(lines)


def level_table(levels: list[dict]) -> str:
    """Per difficulty level: accuracy, mean stated confidence and ECE (means over seeds)."""
    if not levels:
        return "(no difficulty levels in this dataset)"
    names = list(levels[0]["levels"])
    head = "| system | AUROC | within-level AUROC | " + " | ".join(
        f"{n}: acc / conf / ECE" for n in names
    ) + " |"  # fmt: skip
    lines = [head, "|" + "---|" * (3 + len(names))]
    for s in levels:
        cells = [
            f"{_f3(s['levels'][n]['accuracy'])} / {_f3(s['levels'][n]['mean_confidence'])} / "
            f"{_f3(s['levels'][n]['ece'])}"
            for n in names
        ]
        lines.append(f"| {s['system']} | {_f3(s['auroc'])} | {_f3(s['within_level_auroc'])} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(lines)


def cost_table(costs: list[dict]) -> str:
    """The cost regime: per-question cost of the SLM alone and of the LLM alone (test split)."""
    lines = ["| SLM | SLM-only, micro-USD / question | LLM-only, micro-USD / question | "
             "SLM-only / LLM-only | SLM tokens (prompt + reply) | LLM tokens (prompt + reply) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for c in costs:
        lines.append(
            f"| {c['slm']} | {1e6 * c['slm_cost']:.2f} | {1e6 * c['llm_cost']:.2f} | "
            f"{c['ratio']:.3f} | {c['slm_prompt_tokens']:.1f} + {c['slm_completion_tokens']:.1f} | "
            f"{c['llm_prompt_tokens']:.1f} + {c['llm_completion_tokens']:.1f} |"
        )
    return "\n".join(lines)


def strengths_table(strengths: list[dict]) -> str:
    """The joint cascade claim of each verbalized system at each LLM strength."""
    if not strengths:
        return "(the LLM is real: no known per-question accuracy to vary)"
    lines = ["| LLM | decay | LLM pass@1 % (calib.) | system | cascade pass@1 % | vs LLM-only, "
             "points | LLM % | cost vs LLM-only % | joint claim |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in strengths:
        decay = "configured" if s["decay"] is None else f"{s['decay']:.4f}"
        if s["note"]:
            lines.append(f"| {s['name']} | n/a | n/a | ({s['note']}) |" + " |" * 5)
            continue
        for r in s["systems"]:
            st = r["stats"]
            lines.append(
                f"| {s['name']} | {decay} | {100 * s['llm_pass_calibration']:.1f} | "
                f"{r['system']} | {_iv(st['cascade_pass'])} | "
                f"{_iv(st['pass_vs_llm'], signed=True)} | {_iv(st['llm_fraction'])} | "
                f"{_iv(st['cost_vs_llm'], signed=True)} | **{r['joint']}** |"
            )
    return "\n".join(lines)


def training_table(summary: dict) -> str:
    """Per policy run: the per-step diagnostics over the first and the last steps."""
    if not summary:
        return "(no training diagnostics: the policies' metrics.jsonl lack them)"
    keys = (("accuracy", "acc."), ("confidence_mean", "mean q"), ("batch_ece", "ECE"),
            ("batch_auroc", "AUROC"), ("confidence_group_sd", "SD of q in a group"),
            ("groups_all_correct", "all-correct groups"),
            ("groups_all_wrong", "all-wrong groups"))  # fmt: skip
    lines = ["| policy | " + " | ".join(f"{label} (first -> last)" for _, label in keys) + " |",
             "|---|" + "---|" * len(keys)]  # fmt: skip
    for name, s in summary.items():
        cells = [f"{_f3(s['first'][k])} -> {_f3(s['last'][k])}" for k, _ in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def greedy_table(greedy: dict) -> str:
    if not greedy:
        return "(not run: config.greedy=False)"
    lines = ["| SLM | pass@1 % | ECE | AUROC | distinct stated values |", "|---|---|---|---|---|"]
    for name, g in greedy.items():
        lines.append(f"| {name} | {100 * g['pass@1']:.1f} | {_f3(g['ece'])} | "
                     f"{_f3(g['auroc'])} | {g.get('distinct', 'n/a')} |")  # fmt: skip
    return "\n".join(lines)


SIMULATED_BANNER = (
    "**The LLM is SIMULATED**: an in-process stand-in that knows the gold answers and is right "
    "with a known probability that falls with the question's digit work (configs/demo.py). No "
    "real large model is measured; the SLMs are real models trained here."
)


def report_text(experiment: dict, plots: dict) -> str:
    """The whole `report.md` from `experiment.json`'s dict and the plots' relative paths."""
    rows, setup, sim = experiment["rows"], experiment["setup"], experiment["simulated"]
    first = next(r for r in rows if r["fitted"])
    llm_line = (
        f"{'Simulated LLM' if sim else 'LLM'} pass@1 on the test split: "
        f"{100 * first['llm_pass']:.1f}% ({first['llm_view']}"
        + ("; its known per-question accuracy, averaged" if sim else "") + ")"
        + (f"; this draw of it: "
           f"{Interval(**first['llm_pass_sampled_interval']).format(scale=100, digits=1)}%"
           if sim else "")
    )  # fmt: skip
    images = " ".join(f"![{k}]({v})" for k, v in plots.items())
    fit_lines = "\n".join(
        f"- {name} {signal}: " + (
            f"features {f['feature_seconds']:.1f} s, fit {f['fit_seconds']:.1f} s (L2 C = "
            f"{f['c']:g} by cross-validation, {f['n_train']} calibration answers)"
            if f["fitted"] else f"not fitted: {f['note']}")
        for name, by_signal in experiment.get("fits", {}).items()
        for signal, f in by_signal.items()
    )  # fmt: skip
    sampled = "\n".join(
        f"- {r['system']}: at tau = the draw's calibration pass@1, cascade pass@1 "
        f"{_iv(r['stats']['cascade_pass_sampled'])}%, vs the draw's LLM-only "
        f"{_iv(r['stats']['pass_vs_llm_sampled'], signed=True)} points"
        for r in rows if r["fitted"] and r["signal"] == "verbalized"
    )  # fmt: skip
    expected_note = (
        "tau and the LLM-only comparator come from the simulated LLM's *expected* accuracy (it "
        "is known per question: tau is its mean over the calibration split, a deferred "
        "question counts its probability of being right), so no lucky draw moves them; the "
        "draw's own figures are in the section below."
        if first["llm_view"] != "sampled"
        else "tau is the LLM's pass@1 on the calibration split."
    )
    return f"""# corea-jax demo: COREA and the paper's baselines on the synthetic task

{SIMULATED_BANNER if sim else ""}

## Setup
{chr(10).join(setup)}
- {llm_line}.
- Run time {experiment["seconds"] / 60:.1f} min, peak memory {experiment["peak_memory_gb"]:.2f} GB
  (this process and its workers).

## Headline (test split)
Mean over seeds, [95% interval] of a bootstrap over questions and seeds, +- SD over seeds.
ECE: 10 equal-width bins; equal-mass ECE: 15 bins of equal count, ties kept together; Brier:
mean squared error of the stated confidence (a proper score: calibration and ranking); AURC:
area under the risk-coverage curve (lower is better); within-level AUROC: only pairs of
questions from one difficulty level (0.5: the signal knows the level and nothing more). Every
question prints its level, so "RLVR-SLM-Level lookup" (the RLVR SLM's accuracy per level on the
calibration split, as a confidence) is what the prompt alone gives away.
{expected_note}
"distinct conf." counts the distinct values of the row's signal, seed by seed.

{headline_table(rows, sim)}

## The claims, with intervals
"met" only when the whole interval lies inside the target; "not resolved" when it straddles a
boundary (more questions or seeds would be needed to decide). The cascade claim is joint: at
one tau, cost at least 20% below LLM-only *and* pass@1 at most 2 points below it.

{chr(10).join(experiment["claims"])}

## The cost regime
Both models are billed alike: {experiment.get("billing", "see configs/demo.py")}.
Per question, on the test split (the SLM's figures are per SLM; the LLM's are the same for all):

{cost_table(experiment.get("costs", []))}

## The cascade at three LLM strengths
The configured simulated LLM, and LLMs nearer the SLM: the gap in points above the trained
SLMs' mean pass@1 on the calibration split (`llm_gaps`; `corea_jax/demo/strengths.py`). tau by
the paper's rule from each LLM's expected pass@1 on the calibration split.

{strengths_table(experiment.get("strengths", []))}

## Seed table
{seed_table(rows)}

## Greedy decoding (second column)
{greedy_table(experiment["greedy"])}

## Training diagnostics
Batch figures of each GRPO run (`corea_jax/demo/training.py`), means over its first and its last
30 steps: accuracy, mean stated confidence, the batch's ECE and AUROC of q against correctness,
the within-group SD of q (what the calibration term can compare), and the shares of groups that
are all correct or all wrong (no correctness signal). The plot below shows, per level, the mean
stated confidence beside the level's accuracy over the steps.

{training_table(experiment.get("training", {}))}

## Calibration within difficulty levels
Per level: accuracy / mean stated confidence / ECE, means over seeds.

{level_table(experiment["levels"])}

## The simulated LLM's draw
The figures above count the simulated LLM's known accuracy. With its one sampled draw instead
(tau from the draw's calibration pass@1, the draw's answers):

{sampled or "(the LLM is real)"}

## What the fitted baselines cost on this CPU
Probe and router: one forward pass per answer (probe) or prompt (router) for the hidden states,
then the logistic regression (`corea_jax/probes`); a router also saves the SLM's generation on
every question it sends away.

{fit_lines or "(no probe or router in this run)"}

{images}

Per-SLM cascade reports (sweeps, every tau rule, reliability diagrams, every signal):
`compare/slms/NAME/report.md`; every system seed by seed: `compare/compare.md`.
"""
