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

`compute.scan_layers` became a config key (and the paper configs' default) after the first
records were made; those updates were compiled with the layers unrolled, and their records'
overrides were annotated `--config.compute.scan_layers=false` so that each row's command
still compiles what was measured.
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
from corea_jax.parallel.plan import PARTS, Plan, plan_run

RESULTS = Path(__file__).parent / "results" / "fit" / "plans.jsonl"
GENERATIONS = {"v4": "TPU v4", "v5e": "TPU v5e", "v5p": "TPU v5p", "v6e": "TPU v6e"}
GIB = 2**30


# What the compiled programs are made of: "+dirty" marks uncommitted edits there only (edits
# elsewhere in corea_jax, e.g. the cascade or the server, do not change what is compiled).
PROGRAM_SOURCES = ["corea_jax/models", "corea_jax/parallel", "corea_jax/rl", "corea_jax/sampling"]


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", *PROGRAM_SOURCES]).returncode
    return out.stdout.strip() + ("+dirty" if dirty else "")


def measure(config_spec: str, overrides: list[str], topologies: list[str], prompt_tokens: int,
            parts: tuple[str, ...] = PARTS, results: Path = RESULTS):  # fmt: skip
    """Appends one record per (topology, part): the plan of that part alone."""
    config = load_config(config_spec, overrides)
    workload, run = workload_from_config(config, prompt_tokens)
    results.parent.mkdir(parents=True, exist_ok=True)
    for topology in topologies:
        for part in parts:
            t0 = time.perf_counter()
            plan = plan_run(workload, run, topology_devices(topology), parts=(part,))
            record = {
                "commit": commit(), "config": config_spec, "overrides": overrides,
                "prompt_tokens": prompt_tokens, "topology": topology, "part": part,
                "seconds": time.perf_counter() - t0, "plan": dataclasses.asdict(plan),
            }  # fmt: skip
            with results.open("a") as f:
                f.write(json.dumps(record) + "\n")
            peak = plan.peak_bytes / GIB
            seconds = time.perf_counter() - t0
            print(f"{config_spec} {topology} {part}: peak {peak:.2f} GiB, {seconds:.0f} s, "
                  f"refused={plan.refused}", flush=True)  # fmt: skip


def load_plan(d: dict) -> Plan:
    fields = dict(d, chip=Chip(**d["chip"]))
    fields["programs"] = tuple(ProgramCost(**p) for p in d["programs"])
    return Plan(**fields)


# A slice of each generation by its number of chips (v4 and v5p: 3-D tori; v5e, v6e: 2-D).
_GRIDS = {4: ("2x2x1", "2x2"), 8: ("2x2x2", "2x4"), 16: ("2x2x4", "4x4"), 32: ("2x4x4", "4x8"),
          64: ("4x4x4", "8x8"), 128: ("4x4x8", "8x16"), 256: ("4x8x8", "16x16")}  # fmt: skip


def slice_name(generation: str, chips: int) -> str:
    return f"{generation}:{_GRIDS[chips][generation in ('v5e', 'v6e')]}"


def command(config: str, overrides: list[str], topology: str) -> str:
    return " ".join(["corea-jax plan", f"--config={config}", f"--topology={topology}", *overrides])


def merged(records: list[dict]) -> tuple[Plan, str, list[str]] | None:
    """The latest update and rollout records of one slice as one Plan, their commits, and the
    update's config overrides (the rollout's programs do not read `config.compute`)."""
    latest = {r["part"]: r for r in records}
    if set(latest) != set(PARTS):
        return None
    plans = [load_plan(latest[part]["plan"]) for part in PARTS]
    refused = "; ".join(p.refused for p in plans if p.refused) or None
    plan = dataclasses.replace(
        plans[0], programs=sum((p.programs for p in plans), ()), refused=refused
    )
    commits = sorted({latest[part]["commit"] for part in PARTS})
    update = latest["update"]
    extra = [] if update["prompt_tokens"] == 256 else [f"--prompt-tokens={update['prompt_tokens']}"]
    return plan, "/".join(commits), update["overrides"] + extra


def pick(records: list[dict], generation: str, min_headroom: float):
    """(topology, plan, commits, overrides) of the smallest slice on which a config fits on
    `generation`: its own measurement, or one of another generation with as many chips."""
    chip = CHIPS[GENERATIONS[generation]]
    topologies = list(dict.fromkeys(r["topology"] for r in records))
    by_size: dict[int, list[tuple[str, Plan, str]]] = {}
    for topology in topologies:
        found = merged([r for r in records if r["topology"] == topology])
        if found is not None:
            by_size.setdefault(found[0].devices, []).append((topology, *found))
    for size in sorted(by_size):
        own = [m for m in by_size[size] if parse_topology(m[0])[0] == generation]
        topology, plan, commits, overrides = (own or by_size[size])[-1]
        if not plan.refused and plan.peak_bytes <= (1 - min_headroom) * chip.hbm_bytes:
            return topology, plan, commits, overrides
    return None


def table(min_headroom: float, results: Path = RESULTS) -> str:
    records = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    configs = list(dict.fromkeys(r["config"] for r in records))
    lines = [
        "| config | TPU | smallest slice (chips) | per device: peak of HBM (headroom) | "
        "params + optimizer | roofline step (update + rollout) | compiled on, commit | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for config in configs:
        mine = [r for r in records if r["config"] == config]
        for generation in GENERATIONS:
            chip = CHIPS[GENERATIONS[generation]]
            found = pick(mine, generation, min_headroom)
            if found is None:
                sizes = sorted({r["plan"]["devices"] for r in mine})
                lines.append(f"| {config} | {generation} | none of {sizes} chips | | | | | |")
                continue
            topology, plan, commits, overrides = found
            update, rollout = plan.update_seconds(chip), plan.rollout_seconds(chip)
            state = (plan.param_bytes + plan.optimizer_bytes) / GIB
            again = command(config, overrides, slice_name(generation, plan.devices))
            lines.append(
                f"| {config} | {generation} | {plan.devices} chips | "
                f"{plan.peak_bytes / GIB:.1f} of {chip.hbm_bytes / GIB:.1f} GiB "
                f"({100 * (1 - plan.peak_bytes / chip.hbm_bytes):.0f}%) | {state:.1f} GiB | "
                f"{update + rollout:.0f} s ({update:.0f} + {rollout:.0f}) | {topology}, {commits} "
                f"| `{again}` |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--config", required=True)
    m.add_argument("--topology", action="append", required=True)
    m.add_argument("--prompt-tokens", type=int, default=256)
    m.add_argument("--parts", default=",".join(PARTS), help="update,rollout or one of them")
    t = sub.add_parser("table")
    t.add_argument("--min-headroom", type=float, default=0.10)
    for p in (m, t):
        p.add_argument("--results", type=Path, default=RESULTS, help="the JSON lines file")
    args, overrides = parser.parse_known_args(argv)
    if not os.environ.get("JAX_PLATFORMS"):  # compile for TPU slices; never probe for a TPU here
        jax.config.update("jax_platforms", "cpu")
    if args.what == "measure":
        parts = tuple(args.parts.split(","))
        measure(args.config, overrides, args.topology, args.prompt_tokens, parts, args.results)
    else:
        print(table(args.min_headroom, args.results))


if __name__ == "__main__":
    sys.exit(main())
