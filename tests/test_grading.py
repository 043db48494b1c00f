"""Answer grading: equivalence per kind, safety limits, worker pool, and the real gold answers."""

import json
import math
import os
import random
import re
import signal
import threading
import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corea_jax.errors import CoreaError
from corea_jax.scoring import grading
from corea_jax.scoring.grading import (
    GradeTask,
    GradingConfig,
    constant_value,
    grade_answer,
    numbers_equal,
    parse_number,
    parse_yes_no,
    resolve_kind,
)
from corea_jax.scoring.grading_workers import Grader, grade_batch


@pytest.fixture(scope="module")
def grader():
    # 2 s per answer instead of 5: a few real gold pairs (DeepMath's 8^{8^9} against another
    # row's answer) run into the limit, and each costs its full length.
    with Grader(workers=2, options=GradingConfig(time_limit_s=2.0)) as g:
        yield g


# --- one answer at a time (in this process) -----------------------------------------------


@pytest.mark.parametrize(
    "gold, answer",
    [
        ("\\frac{1}{2}", "0.5"),
        ("\\dfrac{1}{2}", "\\boxed{\\frac12}"),
        ("\\frac{1}{3}", "0.333333"),
        ("x^2+1", "1+x^2"),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"),
        ("5", "x = 5"),
        ("90^\\circ", "90"),
        ("\\text{Evelyn}", "Evelyn"),
        ("[-1, 2)", "[-1,2)"),
        ("The answer is $\\frac{14}{3}$.", "$\\frac{14}{3}$"),
    ],
)
def test_math_equivalents_are_correct(gold, answer):
    assert grade_answer(gold, answer, "math").correct


@pytest.mark.parametrize(
    "gold, answer",
    [
        ("\\frac{1}{2}", "\\frac{1}{3}"),
        ("x^2+1", "x^2-1"),
        ("\\frac{1}{3}", "0.33"),
        ("(1, 2)", "(2, 1)"),
        ("3\\sqrt{13}", "13\\sqrt{3}"),
        ("\\pi", "3.14"),
        ("1\\frac{4}{5}", "\\frac{4}{5}"),  # a mixed number is 9/5
    ],
)
def test_math_non_equivalents_are_wrong(gold, answer):
    assert not grade_answer(gold, answer, "math").correct


@pytest.mark.parametrize(
    "text, value",
    [
        ("72", 72),
        ("-3.5", Fraction(-7, 2)),
        ("025", 25),
        ("1,450,000", 1450000),
        (".5", Fraction(1, 2)),
        ("\\$18.90", Fraction(189, 10)),
        ("85\\%", 85),
        ("12 cm", 12),
        ("5\\text{ cents}", 5),
        ("90^\\circ", 90),
        ("\\frac{3}{4}", Fraction(3, 4)),
        ("-\\dfrac{1}{2}", Fraction(-1, 2)),
        ("3/4", Fraction(3, 4)),
        ("x = 2220", 2220),
        ("\\text{63}", 63),
        ("#### 72", 72),
        ("The answer is \\boxed{27}.", 27),
        ("27.0", 27),
    ],
)
def test_parse_number_reads_plain_numbers(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize(
    "text", ["10^10", "1e5", "x", "1,2", "3, 5, 7", "5 x", "10 pi", "\\sqrt{2}", "1/0", "9" * 200]
)
def test_parse_number_rejects_everything_else(text):
    assert parse_number(text) is None


def test_numbers_equal_rounds_only_what_cannot_be_written_exactly():
    assert numbers_equal(Fraction(1, 3), Fraction("0.333333"))
    assert numbers_equal(Fraction(2, 3), Fraction("0.666667"))
    assert not numbers_equal(Fraction("0.0000001"), Fraction("0.0000002"))
    assert not numbers_equal(Fraction(1000000), Fraction(1000001))
    assert not numbers_equal(Fraction(1, 3), Fraction("0.33"))


@pytest.mark.parametrize(
    "gold, answer, correct",
    [
        ("1,450,000", "1450000", True),  # GSM8K thousands
        ("18", "#### 18", True),
        ("025", "25", True),  # AIME leading zeros
        ("27.0", "27", True),  # AMC floats
        ("12", "12 apples", True),
        ("5", "\\sqrt{25}", True),  # not a plain number: math-verify decides
        ("12", "13", False),
        ("0.5", "50\\%", False),  # a percent keeps its number
        ("12", "I don't know", False),
    ],
)
def test_numeric_kind(gold, answer, correct):
    assert grade_answer(gold, answer, "numeric").correct is correct


CHOICES = [{"label": "A", "text": "bank"}, {"label": "B", "text": "river bed"}]


@pytest.mark.parametrize(
    "gold, answer, choices, correct",
    [
        ("B", "B", None, True),
        ("B", "(B)", None, True),
        ("B", "\\boxed{B}", None, True),
        ("B", "The answer is (B).", None, True),
        ("B", "River Bed", CHOICES, True),  # the option's text
        ("B", "(A) bank", CHOICES, False),
        ("B", "bank", CHOICES, False),
        ("B", "C", None, False),
        ("B", "a boat", CHOICES, False),
    ],
)
def test_choice_kind(gold, answer, choices, correct):
    assert grade_answer(gold, answer, "choice", choices).correct is correct


@pytest.mark.parametrize(
    "gold, answer, correct",
    [
        ("Yes", "yes", True),
        ("Yes", "\\boxed{\\text{Yes}}", True),
        ("True", "yes", True),
        ("No", "False", True),
        ("No", "No, because the group is not abelian.", True),
        ("Yes", "No", False),
        ("No", "maybe", False),
    ],
)
def test_yes_no_kind(gold, answer, correct):
    assert grade_answer(gold, answer, "yesno").correct is correct
    assert parse_yes_no("perhaps") is None


@pytest.mark.parametrize(
    "gold, choices, kind",
    [
        ("B", None, "choice"),
        ("Paris", ["Paris", "Rome"], "choice"),
        ("Yes", None, "yesno"),
        ("false", None, "yesno"),
        ("1,200", None, "numeric"),
        ("\\frac{1}{2}", None, "numeric"),
        ("x^2", None, "math"),
        ("G", None, "choice"),
        ("Y", None, "math"),  # beyond J: a symbol, not an option
        ("e", None, "math"),
    ],
)
def test_auto_kind_reads_the_gold(gold, choices, kind):
    assert resolve_kind(gold, "auto", grading.normalize_choices(choices)) == kind


def test_no_answer_and_too_long():
    assert grade_answer("5", None) == grading.Grade(False, "no_answer", "no answer")
    assert grade_answer("5", "  ").method == "no_answer"
    assert grade_answer("5", "1" * 3000).method == "too_long"


@pytest.mark.parametrize(
    "gold, kind, match",
    [
        ("abc", "numeric", "not a number"),
        ("maybe", "yesno", "yes/no"),
        ("Q", "choice", "options"),
        ("5", "fuzzy", "kind"),
    ],
)
def test_bad_gold_or_kind_is_a_user_error(gold, kind, match):
    with pytest.raises(CoreaError, match=match):
        grade_answer(gold, "5", kind)


def test_bad_choices_are_user_errors():
    with pytest.raises(CoreaError, match=r"choices\[1\]"):
        grading.normalize_choices(["a", 3])
    assert grading.normalize_choices({"A": "x"}) == (("A", "x"),)


@pytest.mark.parametrize(
    "text, value",
    [
        ("\\frac{3\\sqrt{3}}{4}", 3 * 3**0.5 / 4),
        ("2^{10}", 1024.0),
        ("-\\frac{\\pi}{6}", -3.141592653589793 / 6),
        ("\\frac 59", 5 / 9),
        ("11\\sqrt2", 11 * 2**0.5),
        ("\\sqrt[3]{8}", 2.0),
        ("\\left(\\frac{1}{2}\\right)^2", 0.25),
        ("1\\frac{4}{5}", None),  # a mixed number: left to math-verify
        ("10^{10^{10}}", None),
        ("\\sqrt{-1}", None),
        ("x+1", None),
        ("2^23", None),
        ("[1,2]", None),
    ],
)
def test_constant_screen_values(text, value):
    got = constant_value(text)
    assert got == pytest.approx(value) if value is not None else got is None


LATEX_BITS = st.sampled_from(
    [
        "\\frac",
        "\\sqrt",
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        "^",
        "-",
        "+",
        "/",
        "*",
        "\\pi",
        "1",
        "25",
        "0.5",
        ",",
        "x",
        "=",
        "\\boxed{",
        "\\text{",
        "$",
        "%",
        " ",
        "####",
        "yes",
        "(B)",
        "\\left(",
        "\\right)",
        "\\cdot",
        "e",
        "\\",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(LATEX_BITS, max_size=30).map("".join)))
def test_cheap_paths_never_raise(text):
    """Everything that runs before math-verify takes any text without an exception."""
    grading.exact_key(text)
    value = parse_number(text)
    assert value is None or isinstance(value, Fraction)
    c = constant_value(text)
    assert c is None or not math.isnan(c)
    parse_yes_no(text)
    for kind, gold in (("choice", "B"), ("yesno", "Yes"), ("numeric", "12")):
        grade = grade_answer(gold, text, kind, options=GradingConfig(time_limit_s=2.0))
        assert isinstance(grade.correct, bool)


def test_soft_time_limit_stops_a_pathological_answer_in_process():
    options = GradingConfig(time_limit_s=0.5, max_answer_chars=None)
    grade = grade_answer("5", "\\boxed{10^{10^{10^{10}}}}", "math", options=options)
    assert grade == grading.Grade(False, "timeout", "grading took over 0.5 s")


# --- the worker pool ----------------------------------------------------------------------

PATHOLOGICAL = [
    "\\boxed{10^{10^{10^{10}}}}",
    "10^10^10^10",
    "+".join(["x"] * 30_000),
    "(" * 50_000 + ")" * 50_000,
    "\\frac{" * 5_000,
    "2**2**2**2**2**2**2",
    "\\boxed{(10^{8})!}",
]


def test_pathological_answers_neither_hang_nor_crash_a_batch():
    options = GradingConfig(time_limit_s=1.0, max_answer_chars=None)
    tasks = [GradeTask("5", a, "math") for a in PATHOLOGICAL]
    tasks += [GradeTask("\\frac{1}{2}", "0.5"), GradeTask("B", "(B)"), GradeTask("7", "7")]
    with Grader(workers=2, options=options, hard_grace_s=2.0) as g:
        grades = g.grade(tasks)
    assert [x.correct for x in grades] == [False] * len(PATHOLOGICAL) + [True] * 3
    assert {x.method for x in grades[: len(PATHOLOGICAL)]} <= {"timeout", "math_verify", "error"}


def test_default_length_limit_skips_huge_answers(grader):
    grades = grader.grade([GradeTask("5", "(" * 100_000), GradeTask("5", "5")])
    assert grades[0].method == "too_long" and grades[1].correct


def _stall_first_busy_worker(g, seconds, sig):
    """After `seconds`, send `sig` to a worker (the one grading the slow answer)."""

    def go():
        time.sleep(seconds)
        os.kill(g.worker_pids()[0], sig)

    thread = threading.Thread(target=go)
    thread.start()
    return thread


@pytest.mark.parametrize("sig, method", [(signal.SIGSTOP, "timeout"), (signal.SIGKILL, "crashed")])
def test_a_stuck_or_dead_worker_costs_one_answer(sig, method):
    """A worker silent past the hard limit (SIGSTOP: like a long C call) is killed; one that
    dies is replaced. Either way only the answer it held is lost."""
    options = GradingConfig(time_limit_s=2.0, max_answer_chars=None)
    slow = GradeTask("5", "\\boxed{10^{10^{10^{10}}}}", "math")
    rest = [GradeTask(str(i), str(i), "numeric") for i in range(20)]
    with Grader(workers=1, options=options, hard_grace_s=0.5) as g:
        g.grade([GradeTask("1", "1")])  # started and warm
        thread = _stall_first_busy_worker(g, 0.5, sig)
        grades = g.grade([slow, *rest])
        thread.join()
        assert g.restarts == 1
        assert grades[0].method == method and not grades[0].correct
        assert all(x.correct for x in grades[1:])
        assert g.grade([GradeTask("2", "2.0")])[0].correct  # the replacement works


def test_workers_that_cannot_start_are_an_error_not_wrong_answers(monkeypatch):
    monkeypatch.setattr("corea_jax.scoring.grading_workers.sys.executable", "/bin/false")
    with Grader(workers=1) as g, pytest.raises(RuntimeError, match="before their first answer"):
        g.grade([GradeTask(str(i), str(i)) for i in range(5)])


def test_duplicates_are_graded_once_and_order_is_kept(grader):
    tasks = [GradeTask("1", "1"), GradeTask("2", "3"), GradeTask("1", "1"), GradeTask("2", "2")]
    assert [g.correct for g in grader.grade(tasks)] == [True, False, True, True]
    assert grader.grade([]) == []


def test_in_process_grader_matches_workers(grader):
    tasks = [GradeTask("\\frac{1}{2}", "0.5"), GradeTask("Yes", "no"), GradeTask("x", "x")]
    with Grader(workers=0) as local:
        assert local.grade(tasks) == grader.grade(tasks)
    assert grade_batch(tasks, workers=0) == grader.grade(tasks)


def test_bad_gold_in_a_batch_raises_before_grading(grader):
    with pytest.raises(CoreaError, match="not a number"):
        grader.grade([GradeTask("5", "5"), GradeTask("five", "5", "numeric")])


def test_constant_screen_agrees_with_math_verify(shared_data):
    """The screen only ever says "wrong"; on pairs of real closed-form answers it says so only
    where math-verify does too."""
    golds = [json.loads(line)["answer"] for line in (shared_data / "math500/test.jsonl").open()]
    consts = [g for g in golds if constant_value(g) is not None and parse_number(g) is None]
    rng = random.Random(0)
    pairs = [(rng.choice(consts), rng.choice(golds)) for _ in range(400)]
    pairs = [
        (g, a)
        for g, a in pairs
        if constant_value(a) is not None
        and grading.clearly_different(constant_value(g), constant_value(a))
    ][:120]
    mv = grading._math_verify()
    for g, a in pairs:
        assert not mv.verify(
            grading._parse_gold(g), grading._math_verify_parse(a), timeout_seconds=None
        ), (g, a)
    assert len(pairs) >= 50


# --- the real gold answers ----------------------------------------------------------------


def _rows(path):
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def load_golds(data):
    """dataset -> [(gold, choices)], read straight from the shipped files."""
    return {
        "MATH-500": [(r["answer"], None) for r in _rows(data / "math500/test.jsonl")],
        "GSM8K": [
            (r["answer"].split("####")[-1].strip(), None) for r in _rows(data / "gsm8k/test.jsonl")
        ],
        "OlympiadBench": [
            (r["final_answer"][0], None)
            for r in _rows(data / "olympiadbench/OE_TO_maths_en_COMP.jsonl")
        ],
        "AIME24": [(r["answer"], None) for r in _rows(data / "aime24/test.jsonl")],
        "AMC23": [(repr(r["answer"]), None) for r in _rows(data / "amc23/test.jsonl")],
        "CommonsenseQA": [
            (r["answerKey"], r["question"]["choices"])
            for r in _rows(data / "commonsenseqa/dev_rand_split.jsonl")
        ],
        "DeepMath": [
            (r["final_answer"], None) for r in _rows(data / "deepmath/deepmath103k_subset.jsonl")
        ],
    }


def reformat(gold: str, choices, i: int) -> str:
    """The same answer written differently, by rules of this test (not the grader's)."""
    if choices:
        text = next(c["text"] for c in choices if c["label"] == gold)
        return text.upper() if i % 2 else f"({gold})"
    if gold in ("Yes", "No", "True", "False"):
        return f"\\boxed{{\\text{{{gold.lower()}}}}}"
    if re.fullmatch(r"[A-J]", gold):
        return f"({gold})"
    if re.fullmatch(r"\d{1,3}(,\d{3})+", gold):
        return gold.replace(",", "")
    if re.fullmatch(r"0\d+", gold):
        return gold.lstrip("0") or "0"
    if re.fullmatch(r"-?\d+\.0", gold):
        return gold[:-2]
    if re.fullmatch(r"-?\d{4,}", gold):
        return f"{int(gold):,}"
    if re.fullmatch(r"-?\d+", gold):
        return f"\\boxed{{{gold}.0}}"
    m = re.fullmatch(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}", gold)
    if m:
        value = Fraction(int(m.group(2)), int(m.group(3)))
        if re.fullmatch(r"(10*|2|4|5|8|16|20|25|40|50)", m.group(3)):
            return m.group(1) + str(float(value))
        return f"{m.group(1)}{value.numerator}/{value.denominator}"
    if "\\dfrac" in gold:
        return gold.replace("\\dfrac", "\\frac")
    if gold.startswith("$") and gold.endswith("$") and gold.count("$") == 2:
        return gold[1:-1]
    return f"$\\boxed{{{gold}}}$"


def _canon(s: str) -> str:
    return re.sub(r"[\s$]|\\[,!;]|\\left|\\right", "", s).lower().replace("dfrac", "frac")


YES_NO = {"yes": True, "true": True, "no": False, "false": False}


def other_answer(rows, kinds, i):
    """The next row's answer that is a different answer of the same kind: a different string
    (for yes/no golds, the other polarity)."""
    gold = rows[i][0]
    for step in range(1, len(rows)):
        j = (i + step) % len(rows)
        cand = rows[j][0]
        if kinds[j] != kinds[i] or _canon(cand) == _canon(gold):
            continue
        if (
            gold.lower() in YES_NO
            and YES_NO.get(cand.lower(), YES_NO[gold.lower()]) is YES_NO[gold.lower()]
        ):
            continue
        return cand
    raise AssertionError("no other answer")


def test_real_gold_answers(shared_data, grader):
    """Every gold answer is right against itself and a reformatted equivalent, and wrong against
    another row's (different) answer. Agreement rates are printed (pytest -rP shows them)."""
    data = load_golds(shared_data)
    tasks, spans = [], {}
    for name, rows in data.items():
        start = len(tasks)
        kinds = [resolve_kind(g, "auto", grading.normalize_choices(c)) for g, c in rows]
        for i, (gold, choices) in enumerate(rows):
            tasks.append(GradeTask(gold, gold, "auto", choices))
            tasks.append(GradeTask(gold, reformat(gold, choices, i), "auto", choices))
            tasks.append(GradeTask(gold, other_answer(rows, kinds, i), "auto", choices))
        spans[name] = (start, len(tasks))
    grades = grader.grade(tasks)

    lines, rates = [], {}
    for name, (start, end) in spans.items():
        rows = [grades[k : k + 3] for k in range(start, end, 3)]
        golds = [t.gold for t in tasks[start:end:3]]
        n = len(rows)
        rates[name] = (
            sum(a.correct for a, _, _ in rows) / n,
            sum(b.correct for _, b, _ in rows) / n,
            sum(not c.correct for _, _, c in rows) / n,
        )
        misses = [g for g, (_, b, _) in zip(golds, rows, strict=True) if not b.correct][:3]
        confusions = [g for g, (_, _, c) in zip(golds, rows, strict=True) if c.correct][:3]
        lines.append(
            f"{name:14s} n={n:5d}  self {rates[name][0]:7.2%}  reformatted {rates[name][1]:7.2%}"
            f"  other row wrong {rates[name][2]:7.2%}"
            + (f"  (reformat misses e.g. {misses})" if misses else "")
            + (f"  (other-row matches e.g. {confusions})" if confusions else "")
        )
    print("\nGold-answer agreement: each gold graded against itself, a reformatted equivalent,")
    print("and another row's different answer")
    print("\n".join(lines))
    for name, (self_ok, same_ok, other_ok) in rates.items():
        assert self_ok == 1.0, name
        assert same_ok >= 0.99, (name, same_ok)
        assert other_ok >= 0.98, (name, other_ok)
