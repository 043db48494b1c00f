"""One scoring path: the same completions scored by training, `evaluate --completions` and the
cascade give identical answers, confidences, format flags and grades, multiple choice included.

Before the single path, training graded without a question's choices, so "(B) blue" or "blue"
for a choice question was wrong in training and right in the cascade.
"""

import json

import numpy as np

from corea_jax import cli
from corea_jax.cascade.pipeline import score_answers
from corea_jax.data import Record
from corea_jax.rl.rollout_rewards import score_groups
from corea_jax.scoring.grading_workers import Grader
from corea_jax.scoring.score import ScoreItem

CHOICE = Record("q1", "Sky colour?", "B", "choice", ("red", "blue", "green"))
MATH = Record("q2", "What is 2 + 2?", "4", "math")

# G = 4 completions per question, the training layout [B, G]
TEXTS = {
    CHOICE: [
        "<think>x</think><answer>(B) blue</answer><confidence>0.8</confidence>",
        "<think>x</think><answer>blue</answer><confidence>0.3</confidence>",
        "<think>x</think><answer>(A) red</answer><confidence>0.9</confidence>",
        "<answer>B</answer>",
    ],
    MATH: [
        "<think>x</think><answer>4</answer><confidence>1.5</confidence>",
        "<think>x</think><answer>5</answer><confidence>0.2</confidence>",
        "<think>x</think><answer>\\boxed{4}</answer><confidence>40%</confidence>",
        "no tags at all: 4",
    ],
}
KEYS = ("answer", "confidence", "format_ok", "correct")


def test_training_evaluate_and_cascade_score_alike(tmp_path):
    records = list(TEXTS)
    flat = [(r, t) for r in records for t in TEXTS[r]]
    with Grader(workers=0) as grader:
        trained = score_groups(
            [t for _, t in flat], [ScoreItem.from_record(r) for r in records], 4, grader
        )
        cascade = score_answers([r for r, _ in flat], [t for _, t in flat], "tags", grader)
    assert trained.correct.shape == (2, 4)
    training_rows = trained.rows()

    path = tmp_path / "completions.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": r.id,
                    "gold": r.answer,
                    "completion": t,
                    "kind": r.kind,
                    "choices": list(r.choices) or None,
                }
            )
            + "\n"
            for r, t in flat
        )  # fmt: skip
    )
    assert cli.main(["evaluate", f"--completions={path}", f"--output={tmp_path / 'out'}"]) == 0
    scored = (tmp_path / "out" / "scored.jsonl").read_text()
    evaluated = [json.loads(line) for line in scored.splitlines()]

    for i in range(len(flat)):
        for key in KEYS:
            assert training_rows[i][key] == cascade[i][key] == evaluated[i][key], (i, key)
    # the choice question's option text and letter-with-text count as right everywhere
    np.testing.assert_array_equal(trained.correct[0], [True, True, False, True])
    np.testing.assert_array_equal(trained.correct[1], [True, False, True, False])
