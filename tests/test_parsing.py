"""Completion parsing: answers, confidences and format flags; never an exception, never slow."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corea_jax.errors import CoreaError
from corea_jax.scoring.parsing import (
    FORMATS,
    OutputFormat,
    extract_boxed,
    extract_choice_letter,
    extract_hash_answer,
    get_format,
    parse_completion,
    parse_confidence,
)


def rlcr(think="thinking", answer="42", confidence="0.85"):
    return (
        f"<think>{think}</think>\n<answer>{answer}</answer>\n<confidence>{confidence}</confidence>"
    )


def test_default_layout_reads_answer_and_confidence():
    p = parse_completion(rlcr())
    assert (p.answer, p.confidence, p.format_ok, p.reason) == ("42", 0.85, True, "")
    assert p.confidence_valid


@pytest.mark.parametrize(
    "text, value",
    [
        ("0.85", 0.85),
        (" .5 ", 0.5),
        ("1", 1.0),
        ("0", 0.0),
        ("1.0", 1.0),
        ("0.", 0.0),
        ("85%", 0.85),
        ("85.5 %", 0.855),
        ("100%", 1.0),
        ("0%", 0.0),
    ],
)
def test_valid_confidences(text, value):
    got, reason = parse_confidence(text)
    assert got == pytest.approx(value) and reason == ""


@pytest.mark.parametrize(
    "text, why",
    [
        (None, "missing"),
        ("", "empty"),
        ("   ", "empty"),
        ("1.5", "out of [0, 1]"),
        ("120%", "out of [0, 1]"),
        ("NaN", "not a number"),
        ("nan", "not a number"),
        ("inf", "not a number"),
        ("-0.2", "not a number"),
        ("1e-1", "several numbers"),
        ("high", "not a number"),
        ("0.2 or 0.3", "several numbers"),
        ("0.2, 0.3", "several numbers"),
        ("0.8\n0.9", "several numbers"),
        ("9" * 500, "not a number"),
        ("½", "not a number"),
    ],
)
def test_invalid_confidences_are_flagged_not_raised(text, why):
    value, reason = parse_confidence(text)
    assert value is None and why in reason


def test_invalid_confidence_fails_format_but_keeps_answer():
    p = parse_completion(rlcr(confidence="very sure"))
    assert p.answer == "42" and p.confidence is None and not p.format_ok
    assert "not a number" in p.reason == p.confidence_reason


def test_last_confidence_and_last_answer_win():
    text = rlcr() + "<answer>7</answer><confidence>0.1</confidence><confidence>25%</confidence>"
    p = parse_completion(text)
    assert p.answer == "7" and p.confidence == 0.25 and p.format_ok


def test_first_answer_option():
    fmt = OutputFormat(answer_pick="first", allow_outer_text=True)
    assert parse_completion(rlcr(answer="1") + "<answer>2</answer>", fmt).answer == "1"
    boxed = OutputFormat(
        answer_source="boxed", think_tag=None, answer_tag=None, answer_pick="first"
    )
    assert parse_completion("\\boxed{1} \\boxed{2} <confidence>1</confidence>", boxed).answer == "1"
    assert extract_boxed("\\boxed{1 \\boxed{2}", last=False) == "2"  # the first is unbalanced
    with pytest.raises(CoreaError, match="answer_pick"):
        OutputFormat(answer_pick="middle")


def test_missing_confidence_is_invalid():
    p = parse_completion("<think>x</think><answer>3</answer>")
    assert p.confidence is None and not p.format_ok
    assert p.reason == "missing <confidence>...</confidence>"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("<answer>1</answer><confidence>0.5</confidence>", "missing <think>"),
        ("<think>a</think><answer></answer><confidence>0.5</confidence>", "empty answer"),
        ("<think>a</think><answer> \n </answer><confidence>0.5</confidence>", "empty answer"),
        ("<think>a<answer>1</answer></think><confidence>0.5</confidence>", "<answer> before"),
        ("<think>a</think><confidence>0.5</confidence><answer>1</answer>", "<confidence> before"),
        ("<think>a</think><think>b<answer>1</answer><confidence>.5</confidence>", "unbalanced"),
        ("<think>a</think><answer>1</answer></answer><confidence>.5</confidence>", "unbalanced"),
        ("<think><think>a</think></think><answer>1</answer><confidence>.5</confidence>", "unbal"),
        ("hi <think>a</think><answer>1</answer><confidence>0.5</confidence>", "outside"),
        ("<think>a</think><answer>1</answer><confidence>0.5</confidence> ok?", "outside"),
    ],
)
def test_format_failures_name_the_reason(text, reason):
    p = parse_completion(text)
    assert not p.format_ok and reason in p.reason


def test_tags_are_case_and_space_insensitive():
    p = parse_completion("<THINK>a</Think>< answer >5</ answer ><Confidence>0.3</CONFIDENCE >")
    assert (p.answer, p.confidence, p.format_ok) == ("5", 0.3, True)


def test_think_prefilled_prompt():
    text = "reasoning...</think><answer>5</answer><confidence>0.3</confidence>"
    assert not parse_completion(text).format_ok
    assert parse_completion(text, OutputFormat(think_prefilled=True)).format_ok


def test_outer_text_allowed_when_configured():
    fmt = OutputFormat(allow_outer_text=True)
    p = parse_completion("Sure! " + rlcr() + " Done.", fmt)
    assert p.format_ok and p.answer == "42"


def test_boxed_layout():
    fmt = FORMATS["boxed"]
    p = parse_completion("So x = \\boxed{\\frac{1}{2}}.\n<confidence>0.6</confidence>", fmt)
    assert (p.answer, p.confidence, p.format_ok) == ("\\frac{1}{2}", 0.6, True)
    p = parse_completion("no box <confidence>0.6</confidence>", fmt)
    assert p.answer is None and not p.format_ok and "boxed" in p.reason


def test_tag_or_boxed_falls_back_to_the_box():
    fmt = OutputFormat(answer_source="tag_or_boxed")
    text = "<think>\\boxed{3}</think><answer> </answer><confidence>0.2</confidence>"
    assert parse_completion(text, fmt).answer == "3"


def test_choice_layout_reduces_to_a_letter():
    p = parse_completion(rlcr(answer="(C) a river bank"), FORMATS["choice"])
    assert p.answer == "C" and p.format_ok
    p = parse_completion(rlcr(answer="a river bank"), FORMATS["choice"])
    assert p.answer == "a river bank"  # no letter: the text is kept for the grader


@pytest.mark.parametrize(
    "text, want",
    [
        ("\\boxed{5}", "5"),
        ("a \\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\fbox{7}", "7"),
        ("\\boxed {x}", "x"),
        ("\\boxed{2} and \\boxed{3", "2"),  # the last box is unbalanced: the one before it
        ("\\boxed{", None),
        ("no box", None),
    ],
)
def test_extract_boxed(text, want):
    assert extract_boxed(text) == want


@pytest.mark.parametrize(
    "text, want",
    [
        ("B", "B"),
        ("(B)", "B"),
        ("b", "B"),
        ("B.", "B"),
        ("\\boxed{D}", "D"),
        ("$\\text{(E)}$", "E"),
        ("(C) a river bank", "C"),
        ("C. a river bank", "C"),
        ("The answer is (A).", "A"),
        ("Answer: D", "D"),
        ("I think option B is right", "B"),
        ("F", None),  # not an option letter
        ("a dog", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_choice_letter(text, want):
    assert extract_choice_letter(text, "ABCDE") == want


def test_extract_hash_answer():
    assert extract_hash_answer("So 3 + 4 = 7.\n#### 7") == "7"
    assert extract_hash_answer("#### 1\n#### 1,200 ") == "1,200"
    assert extract_hash_answer("#### ") is None and extract_hash_answer("7") is None


def test_bad_format_options_raise_user_errors():
    with pytest.raises(CoreaError, match="answer_source"):
        OutputFormat(answer_source="regex")
    with pytest.raises(CoreaError, match="think_tag"):
        OutputFormat(think_tag="a b")
    with pytest.raises(CoreaError, match="tags"):
        get_format("xml")


# --- robustness ---------------------------------------------------------------------------

FRAGMENTS = st.sampled_from(
    [
        "<think>",
        "</think>",
        "<answer>",
        "</answer>",
        "<confidence>",
        "</confidence>",
        "< answer >",
        "</ CONFIDENCE>",
        "<",
        ">",
        "\\boxed{",
        "{",
        "}",
        "0.5",
        "85%",
        "1.5",
        "NaN",
        "(B)",
        "x",
        " ",
        "\n",
        "é",
        "\x00",
        "\ud7ff",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(FRAGMENTS, max_size=40).map("".join)))
def test_never_raises_on_any_text(text):
    for fmt in FORMATS.values():
        p = parse_completion(text, fmt)
        if p.format_ok:
            assert p.answer and 0.0 <= p.confidence <= 1.0
        if p.confidence is not None:
            assert 0.0 <= p.confidence <= 1.0
        assert p.format_ok == (p.reason == "")


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 1.0), st.booleans())
def test_written_confidences_read_back(q, as_percent):
    text = f"{100 * q:.2f}%" if as_percent else f"{q:.4f}"
    value, _ = parse_confidence(text)
    assert value == pytest.approx(q, abs=1e-4)


MEGABYTE = 1_000_000


@pytest.mark.parametrize(
    "text",
    [
        "<" + " " * MEGABYTE,
        "<think>" * (MEGABYTE // 7),
        "\\boxed{" * (MEGABYTE // 7),
        "{" * MEGABYTE,
        "}" * MEGABYTE,
        "<think>" + "a" * MEGABYTE,
        rlcr(think="x" * MEGABYTE),
        "<answer>" + "(" * MEGABYTE + "</answer>",
        "<confidence>" + "9" * MEGABYTE + "</confidence>",
        "#### " + "1" * MEGABYTE,
        "é" * MEGABYTE,
    ],
    ids=lambda t: repr(t[:12]),
)
def test_megabyte_adversarial_inputs_finish(text):
    for fmt in FORMATS.values():
        p = parse_completion(text, fmt)
        assert isinstance(p.format_ok, bool)
    extract_choice_letter(text)
    extract_hash_answer(text)
