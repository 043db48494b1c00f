"""Grading throughput on MATH-500-style answers (issue 4 target: >= 500 answers/s on 2 cores).

    python benchmarks/grading.py [--workers 2] [--group 8] [--data ../shared/data]

For each MATH-500 problem it makes `--group` answers of the kinds a policy writes, about half
right and half wrong: the gold re-wrapped (`\\boxed{}`, `$...$`, `\\dfrac`, spacing) or in
another form (a decimal, `x = 5`), and wrong answers of the gold's own type (for a number: a
nearby number, its negation or double, another problem's number; for anything else, another
problem's non-numeric answer: tuples, intervals, expressions, all through math-verify). Every
(gold, answer) pair is distinct, so the `Grader`'s de-duplication saves nothing and the figure is
the grading speed itself. A second mix ("any": wrong answers of any type) is timed as well.
The pool is started and warmed first (a training loop keeps it open).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

from corea_jax.scoring.grading import GradeTask, exact_key, parse_number
from corea_jax.scoring.grading_workers import Grader

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def variants(gold: str, others: list[str], rng: random.Random) -> tuple[list[str], list[str]]:
    """(equivalent forms, wrong answers) a model might give for `gold`."""
    same = [gold, f"\\boxed{{{gold}}}", f"${gold}$", gold.replace("\\frac", "\\dfrac")]
    same.append(gold.replace(" ", "") if " " in gold else re.sub(r"([-+=,])", r" \1 ", gold))
    value = parse_number(gold)
    wrong = rng.sample(others, 3)
    if value is not None:
        same += [f"{float(value):.6f}".rstrip("0").rstrip("."), f"x = {gold}"]
        wrong += [str(value + rng.choice([-2, -1, 1, 2, 10])), str(-value), str(2 * value)]
    return same, wrong


def make_tasks(data_dir: Path, group: int, mix: str = "typed", seed: int = 0) -> list[GradeTask]:
    """`group` answers per MATH-500 problem: about half equivalent forms, half wrong; every
    (gold, answer) pair distinct. mix="typed": wrong answers share the gold's type (numeric or
    not); mix="any": they are any other problem's answer (harder: more math-verify work)."""
    rows = [json.loads(line) for line in (data_dir / "math500" / "test.jsonl").open()]
    golds = [r["answer"] for r in rows]
    numeric = [g for g in golds if parse_number(g) is not None]
    symbolic = [g for g in golds if parse_number(g) is None]
    rng = random.Random(seed)
    tasks = []
    for gold in golds:
        pool = numeric if parse_number(gold) is not None else symbolic
        pool = [g for g in (pool if mix == "typed" else golds) if g != gold]
        same, wrong = variants(gold, pool, rng)
        same = list({exact_key(a) + str(a == gold): a for a in same}.values())
        rng.shuffle(same)
        rng.shuffle(wrong)
        picked = list(dict.fromkeys(same[: group // 2] + wrong))[:group]
        tasks += [GradeTask(gold, a, "math") for a in picked]
    return tasks


def worker_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (Linux /proc; 0 elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def throughput(tasks: list[GradeTask], workers: int) -> dict:
    """Answers per second on `tasks` with a started, warmed pool; the first half and the second
    half timed separately (the parsers' caches warm up as they go). Also answers per second of
    worker CPU time, times the number of workers: the rate with the cores to themselves, which
    a busy shared machine does not disturb."""
    half = len(tasks) // 2
    with Grader(workers=workers) as grader:
        t0 = time.perf_counter()
        grader.grade(tasks[:64])  # start-up: process launch, imports, warm-up
        t1 = time.perf_counter()
        pids = grader.worker_pids()
        cpu0 = worker_cpu_seconds(pids)
        grades = grader.grade(tasks[64:half])
        t2 = time.perf_counter()
        grades += grader.grade(tasks[half:])
        t3 = time.perf_counter()
        cpu = worker_cpu_seconds(pids) - cpu0
        if grader.restarts:
            cpu = float("nan")  # a replaced worker's time is lost
    return {
        "startup_s": t1 - t0,
        "first_half": (half - 64) / (t2 - t1),
        "second_half": (len(tasks) - half) / (t3 - t2),
        "overall": (len(tasks) - 64) / (t3 - t1),
        "per_cpu": workers * (len(tasks) - 64) / cpu if cpu > 0 else float("nan"),
        "grades": grades,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)

    for mix in ("typed", "any"):
        tasks = make_tasks(args.data, args.group, mix)
        r = throughput(tasks, args.workers)
        grades = r["grades"]
        methods = Counter(g.method for g in grades)
        print(f"== mix={mix}: {len(tasks)} distinct (gold, answer) pairs, {args.workers} workers")
        print(f"   start-up (first 64 answers): {r['startup_s']:.2f} s")
        print(f"   first half {r['first_half']:.0f}/s, second half {r['second_half']:.0f}/s")
        print(
            f"   correct {sum(g.correct for g in grades)}/{len(grades)}; decided by {dict(methods)}"
        )
        print(f"   THROUGHPUT: {r['overall']:.0f} answers/s wall-clock")
        print(
            f"   ({r['per_cpu']:.0f} answers/s from worker CPU time x {args.workers}: the rate "
            f"on {args.workers} otherwise idle cores; machine load now {os.getloadavg()[0]:.1f})"
        )


if __name__ == "__main__":
    main()
