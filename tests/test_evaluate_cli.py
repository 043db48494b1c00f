"""`corea-jax evaluate --completions FILE.jsonl`: scored rows, metrics.json, one-line errors."""

import json
import textwrap

import pytest

from corea_jax import cli


def completion(answer, confidence="0.8"):
    tail = "" if confidence is None else f"<confidence>{confidence}</confidence>"
    return f"<think>working</think><answer>{answer}</answer>{tail}"


ROWS = [
    {"id": "q1", "gold": "\\frac{1}{2}", "completion": completion("0.5", "0.9")},
    {"id": "q1", "gold": "\\frac{1}{2}", "completion": completion("\\boxed{1/3}", "60%")},
    {"id": "q2", "gold": 27.0, "completion": completion("27", None), "kind": "numeric"},
    {"id": "q2", "gold": 27.0, "completion": completion("26", "0.3"), "kind": "numeric"},
    {
        "id": "q3",
        "gold": "B",
        "choices": ["red", "blue"],
        "completion": completion("blue", "1.5"),
    },
    {"id": "q3", "gold": "B", "choices": ["red", "blue"], "completion": "no tags at all"},
]


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_scores_rows_and_writes_metrics(tmp_path, capsys):
    src = write_rows(tmp_path / "run.jsonl", ROWS)
    out = tmp_path / "out"
    assert (
        cli.main(["evaluate", "--completions", str(src), "--output", str(out), "--workers", "0"])
        == 0
    )
    scored = [json.loads(line) for line in (out / "scored.jsonl").open()]
    assert [s["id"] for s in scored] == ["q1", "q1", "q2", "q2", "q3", "q3"]
    assert [s["correct"] for s in scored] == [True, False, True, False, True, False]
    assert [s["confidence"] for s in scored] == [0.9, 0.6, None, 0.3, None, None]
    assert [s["format_ok"] for s in scored] == [True, True, False, True, False, False]
    assert scored[2]["format_reason"] == "missing <confidence>...</confidence>"
    assert "out of [0, 1]" in scored[4]["format_reason"]
    assert scored[0]["answer"] == "0.5" and scored[5]["answer"] is None
    assert scored[5]["grade_method"] == "no_answer"
    for s in scored:
        assert set(s) >= {"correct", "answer", "confidence", "confidence_valid", "format_ok"}

    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 6 and m["n_questions"] == 3
    assert m["pass@1"] == pytest.approx(0.5)
    assert m["format_rate"] == pytest.approx(0.5)
    assert m["pass@k"] == {"1": pytest.approx(0.5), "2": pytest.approx(1.0)}
    # invalid confidences count as 0: q = [.9, .6, 0, .3, 0, 0], c = [1, 0, 1, 0, 1, 0]
    brier = (0.01 + 0.36 + 1 + 0.09 + 1 + 0) / 6
    assert m["brier"] == pytest.approx(brier, abs=1e-5)
    for key in ("ece", "ece_equal_mass", "auroc", "reliability", "confidence_histogram"):
        assert key in m
    assert sum(m["confidence_histogram"]["counts"]) == 6
    for name in ("pass@1", "ece", "brier", "auroc"):  # bootstrap over the 3 questions
        iv = m["intervals"][name]
        assert set(iv) == {"point", "low", "high", "level"} and iv["level"] == 0.95
    assert m["intervals"]["pass@1"]["point"] == pytest.approx(0.5)
    assert 0.0 <= m["intervals"]["pass@1"]["low"] <= 0.5 <= m["intervals"]["pass@1"]["high"] <= 1
    stdout = capsys.readouterr().out
    assert "pass@1 0.5000" in stdout and "metrics.json" in stdout and "95% intervals" in stdout


def test_default_output_dir_and_worker_processes(tmp_path):
    src = write_rows(tmp_path / "run.jsonl", ROWS[:2])
    assert cli.main(["evaluate", "--completions", str(src), "--workers", "1"]) == 0
    m = json.loads((tmp_path / "run.eval" / "metrics.json").read_text())
    assert m["pass@1"] == pytest.approx(0.5)
    assert m["auroc"] == 1.0


@pytest.mark.parametrize(
    "choices",
    [["red", "blue"], [{"label": "A", "text": "red"}, {"label": "B", "text": "blue"}],
     {"A": "red", "B": "blue"}],
)  # fmt: skip
def test_a_choice_answer_is_read_as_its_letter_whatever_the_choices_layout(tmp_path, choices):
    rows = [{"id": "q", "gold": "B", "choices": choices, "completion": completion(a)}
            for a in ("(B) blue", "B", "(A) red")]  # fmt: skip
    src, out = write_rows(tmp_path / "c.jsonl", rows), tmp_path / "out"
    assert cli.main(["evaluate", "--completions", str(src), "--output", str(out)]) == 0
    scored = [json.loads(line) for line in (out / "scored.jsonl").open()]
    assert [(s["answer"], s["correct"]) for s in scored] == [("B", True), ("B", True),
                                                             ("A", False)]  # fmt: skip


def test_invalid_confidence_option_and_boxed_format(tmp_path):
    rows = [
        {"id": 1, "gold": "4", "completion": "2+2 = \\boxed{4} <confidence>0.5</confidence>"},
        {"id": 2, "gold": "5", "completion": "so \\boxed{5}"},
    ]
    src = write_rows(tmp_path / "b.jsonl", rows)
    args = ["evaluate", "--completions", str(src), "--format", "boxed", "--workers", "0"]
    assert cli.main([*args, "--invalid-confidence", "1.0"]) == 0
    m = json.loads((tmp_path / "b.eval" / "metrics.json").read_text())
    assert m["pass@1"] == 1.0 and m["format_rate"] == 0.5
    assert m["mean_confidence"] == pytest.approx(0.75)
    assert m["auroc"] is None and "every answer is correct" in m["auroc_reason"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "line 3: not valid JSON"),
        ("[1, 2]", "line 3: expected a JSON object"),
        ('{"id": 1, "completion": "x"}', "line 3: missing field 'gold'"),
        ('{"id": 1, "gold": "1"}', "line 3: missing field 'completion'"),
        ('{"id": [1], "gold": "1", "completion": "x"}', "line 3: field 'id'"),
        ('{"id": 1, "gold": "", "completion": "x"}', "line 3: field 'gold'"),
        ('{"id": 1, "gold": "1", "completion": 5}', "line 3: field 'completion'"),
        ('{"id": 1, "gold": "1", "completion": "x", "kind": "essay"}', "line 3: field 'kind'"),
        ('{"id": 1, "gold": "one", "completion": "x", "kind": "numeric"}', "line 3: gold answer"),
        ('{"id": 1, "gold": "Z", "completion": "x", "choices": ["a", "b"]}', "line 3: gold"),
        ('{"id": 1, "gold": "A", "completion": "x", "choices": [1]}', "line 3: choices[0]"),
    ],
)
def test_bad_rows_are_one_line_errors_naming_the_line(tmp_path, capsys, line, message):
    src = tmp_path / "bad.jsonl"
    good = json.dumps(ROWS[0])
    src.write_text(f"{good}\n{good}\n{line}\n{good}\n")
    assert cli.main(["evaluate", "--completions", str(src), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{src}, " in err and message in err


def test_missing_or_empty_file(tmp_path, capsys):
    assert cli.main(["evaluate", "--completions", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "empty.jsonl").write_text("\n")
    assert cli.main(["evaluate", "--completions", str(tmp_path / "empty.jsonl")]) == 2
    assert "no rows" in capsys.readouterr().err


def test_bad_options(tmp_path, capsys):
    src = write_rows(tmp_path / "run.jsonl", ROWS[:1])
    for extra, message in [
        (["--bins", "0"], "--bins"),
        (["--invalid-confidence", "2"], "--invalid-confidence"),
        (["--time-limit", "0"], "--time-limit"),
    ]:
        assert cli.main(["evaluate", "--completions", str(src), *extra]) == 2
        assert message in capsys.readouterr().err


def test_needs_completions_or_config_with_workdir(tmp_path, capsys):
    assert cli.main(["evaluate"]) == 2
    assert "--completions" in capsys.readouterr().err
    config = tmp_path / "exp.py"
    config.write_text(
        textwrap.dedent(
            """
            import ml_collections

            def get_config(arg=None):
                return ml_collections.ConfigDict(dict(model="tiny"))
            """
        )
    )
    assert cli.main(["evaluate", f"--config={config}"]) == 2
    assert "--workdir" in capsys.readouterr().err
