"""`corea-jax generate` end to end on a tiny model directory with a tokenizer."""

import json
import shutil

import pytest
from tiny_models import CORRUPTIONS, make_jax_checkpoint, make_tokenizer

from corea_jax import cli


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    tok = make_tokenizer(root / "tok")
    d = make_jax_checkpoint("qwen2", root / "m", tokenizer_dir=tok)
    return d


def test_generate_writes_one_line_per_sample(model_dir, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        json.dumps({"prompt": "What is 12 + 30?"})
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "hi"}]})
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    rc = cli.main(
        ["generate", "--model", str(model_dir), "--prompts-file", str(prompts), "--chat",
         "--n", "3", "--max-new-tokens", "6", "--temperature", "0.7", "--top-k", "20",
         "--output", str(out)]
    )  # fmt: skip
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["prompt_index"], r["sample_index"]) for r in rows] == [
        (p, s) for p in range(2) for s in range(3)
    ]
    for r in rows:
        assert len(r["token_ids"]) == len(r["logprobs"]) <= 6
        assert r["finish_reason"] in ("eos", "stop", "length")
        assert all(lp <= 0 for lp in r["logprobs"])


def test_generate_greedy_to_stdout(model_dir, capsys):
    assert cli.main(["generate", "--model", str(model_dir), "--prompt", "12 + 30",
                     "--temperature", "0", "--max-new-tokens", "4"]) == 0  # fmt: skip
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert json.loads(line)["prompt_index"] == 0


def test_bad_prompts_file_names_the_line(model_dir, tmp_path, capsys):
    prompts = tmp_path / "bad.jsonl"
    prompts.write_text('{"prompt": "ok"}\n{"oops": 1}\n')
    rc = cli.main(["generate", "--model", str(model_dir), "--prompts-file", str(prompts)])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "bad.jsonl:2" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("how", ["cut inside the tensor data", "garbage header"])
def test_corrupt_weights_end_with_one_line_naming_the_file(how, model_dir, tmp_path, capsys):
    broken = shutil.copytree(model_dir, tmp_path / "m")
    f = broken / "model.safetensors"
    f.write_bytes(CORRUPTIONS[how](f.read_bytes()))
    rc = cli.main(["generate", "--model", str(broken), "--prompt", "hi", "--max-new-tokens", "2"])
    assert rc != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(f) in err
