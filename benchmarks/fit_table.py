"""The README's "Will it fit?" table: for each paper config, the smallest TPU slice of each
generation (v4, v5e, v5p, v6e) on which it fits with 10% of HBM free, from `corea-jax plan`.

    python benchmarks/fit_table.py measure --config=configs/rlcc_qwen7b.py:corea \
        --topology=v5p:2x2x4 [--topology=v5p:2x4x4 ...] [--config.KEY=VALUE ...]
    python benchmarks/fit_table.py table [--min-headroom=0.1]

`measure` compiles the plan of one config on each slice named (the same code path as
`corea-jax plan`; about 2-4 minutes per slice for a 7B model on a 2-core CPU) and appends one
JSON line per slice to benchmarks/results/fit/plans.jsonl with the git commit it measured.
`table` prints the markdown table from those lines: per config and generation the smallest
measured slice that fits. A slice of one generation stands in for the same number of chips of
another only where that one was not measured; the row then names the slice it was compiled
on (per-device bytes of one program differ little between TPU generations; a refusal on a chip
with more HBM is a refusal on one with less).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax

from corea_jax.cli.config import load_config
from corea_jax.cli.plan import workload_from_config
from corea_jax.parallel.aot import CHIPS, Chip, ProgramCost, parse_topology, topology_devices
from corea_jax.parallel.plan import Plan, plan_run

RESULTS = Path(__file__).parent / "results" / "fit" / "plans.jsonl"
GENERATIONS = {"v4": "TPU v4", "v5e": "TPU v5e", "v5p": "TPU v5p", "v6e": "TPU v6e"}
GIB = 2**30


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "corea_jax"]).returncode
    return out.stdout.strip() + ("+dirty" if dirty else "")


def measure(config_spec: str, overrides: list[str], topologies: list[str], prompt_tokens: int,
            results: Path = RESULTS):  # fmt: skip
    config = load_config(config_spec, overrides)
    workload, run = workload_from_config(config, prompt_tokens)
    results.parent.mkdir(parents=True, exist_ok=True)
    for topology in topologies:
        t0 = time.perf_counter()
        plan = plan_run(workload, run, topology_devices(topology))
        record = {
            "commit": commit(),
            "config": config_spec,
            "overrides": overrides,
            "prompt_tokens": prompt_tokens,
            "topology": topology,
            "seconds": time.perf_counter() - t0,
            "plan": dataclasses.asdict(plan),
        }
        with results.open("a") as f:
            f.write(json.dumps(record) + "\n")
        peak = plan.peak_bytes / GIB
        print(f"{config_spec} {topology}: peak {peak:.2f} GiB, refused={plan.refused}", flush=True)


def load_plan(d: dict) -> Plan:
    fields = dict(d, chip=Chip(**d["chip"]))
    fields["programs"] = tuple(ProgramCost(**p) for p in d["programs"])
    return Plan(**fields)


def command(record: dict) -> str:
    words = ["corea-jax plan", f"--config={record['config']}", f"--topology={record['topology']}"]
    return " ".join(words + record["overrides"])


def pick(records: list[dict], generation: str, min_headroom: float) -> tuple[dict, Plan] | None:
    """The smallest slice (chips) on which a config fits on `generation`, from `records`."""
    chip = CHIPS[GENERATIONS[generation]]
    by_size: dict[int, list[dict]] = {}
    for r in records:
        by_size.setdefault(r["plan"]["devices"], []).append(r)
    for size in sorted(by_size):
        own = [r for r in by_size[size] if parse_topology(r["topology"])[0] == generation]
        record = (own or by_size[size])[-1]  # the latest measurement, own generation first
        plan = load_plan(record["plan"])
        if not plan.refused and plan.peak_bytes <= (1 - min_headroom) * chip.hbm_bytes:
            return record, plan
    return None


def table(min_headroom: float, results: Path = RESULTS) -> str:
    records = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    configs = list(dict.fromkeys(r["config"] for r in records))
    lines = [
        "| config | TPU | smallest slice (chips) | per device: peak of HBM (headroom) | "
        "state (params + optimizer) | roofline step (update + rollout) | compiled at |",
        "|---|---|---|---|---|---|---|",
    ]
    for config in configs:
        for generation in GENERATIONS:
            chip = CHIPS[GENERATIONS[generation]]
            found = pick([r for r in records if r["config"] == config], generation, min_headroom)
            if found is None:
                sizes = sorted({r["plan"]["devices"] for r in records if r["config"] == config})
                lines.append(f"| {config} | {generation} | none up to {max(sizes)} chips "
                             "measured | | | | |")  # fmt: skip
                continue
            record, plan = found
            update, rollout = plan.update_seconds(chip), plan.rollout_seconds(chip)
            state = (plan.param_bytes + plan.optimizer_bytes) / GIB
            lines.append(
                f"| {config} | {generation} | {record['topology']} ({plan.devices}) | "
                f"{plan.peak_bytes / GIB:.1f} of {chip.hbm_bytes / GIB:.1f} GiB "
                f"({100 * (1 - plan.peak_bytes / chip.hbm_bytes):.0f}%) | {state:.1f} GiB | "
                f"{update + rollout:.0f} s ({update:.0f} + {rollout:.0f}) | "
                f"{record['commit']}: `{command(record)}` |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--config", required=True)
    m.add_argument("--topology", action="append", required=True)
    m.add_argument("--prompt-tokens", type=int, default=256)
    t = sub.add_parser("table")
    t.add_argument("--min-headroom", type=float, default=0.10)
    for p in (m, t):
        p.add_argument("--results", type=Path, default=RESULTS, help="the JSON lines file")
    args, overrides = parser.parse_known_args(argv)
    if not os.environ.get("JAX_PLATFORMS"):  # compile for TPU slices; never probe for a TPU here
        jax.config.update("jax_platforms", "cpu")
    if args.what == "measure":
        measure(args.config, overrides, args.topology, args.prompt_tokens, args.results)
    else:
        print(table(args.min_headroom, args.results))


if __name__ == "__main__":
    sys.exit(main())
