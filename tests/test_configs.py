"""Experiment configs and the launch kit: every config builds with every documented arg and says
how to launch it; each paper run trains the model, reward and learning rate it claims; one smoke
variant trains end to end; the tpu/ scripts check their environment and print what they would run.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from corea_jax import cli
from corea_jax.cli.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
HELPERS = {"__init__.py", "common.py", "eval_common.py", "rlcc_common.py", "compare_common.py"}
CONFIG_FILES = sorted(p.name for p in CONFIGS.glob("*.py") if p.name not in HELPERS)
REWARDS = ("rlvr", "brier", "corea", "corea_l2", "corea_kl")

# file -> args documented in words (ARG lists); the args of its docstring's launch commands
# are added by `_documented_args`, and every file is also built with no arg.
ARGS = {
    "smoke.py": (None, "sft"),
    "rlcc_qwen7b.py": (None, *REWARDS, *(f"{r},smoke" for r in REWARDS), "smoke"),
    "rlcc_qwen1_5b.py": (None, *REWARDS, *(f"{r},smoke" for r in REWARDS), "smoke"),
    "rlcc_llama8b.py": (None, *REWARDS, *(f"{r},smoke" for r in REWARDS), "smoke"),
    "rlcc_group_size.py": (None, "4", "8", "16", "4,smoke", "16,smoke"),
}

# The paper's training runs: (file, model, learning rate).
RLCC = {
    "rlcc_qwen7b.py": ("Qwen/Qwen2.5-7B-Instruct", 1e-6),
    "rlcc_qwen1_5b.py": ("Qwen/Qwen2.5-1.5B-Instruct", 3e-6),
    "rlcc_llama8b.py": ("meta-llama/Llama-3.1-8B-Instruct", 1e-6),
}


def _spec(name, arg):
    return str(CONFIGS / name) + (f":{arg}" if arg else "")


def _docstring(name):
    return (CONFIGS / name).read_text().split('"""')[1]


def _documented_args(name):
    in_commands = re.findall(rf"--config=configs/{re.escape(name)}:(\S+)", _docstring(name))
    return sorted({None, *ARGS.get(name, ()), *in_commands}, key=lambda a: a or "")


def _cases():
    for name in CONFIG_FILES:
        for arg in _documented_args(name):
            yield pytest.param(name, arg, id=f"{name}:{arg}" if arg else name)


@pytest.mark.parametrize("name,arg", list(_cases()))
def test_config_builds(name, arg):
    config = load_config(_spec(name, arg))
    assert config.to_dict()


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_docstring_gives_the_launch_command(name):
    doc = _docstring(name)
    launch = re.search(rf"corea-jax (\w+) --config=configs/{re.escape(name)}", doc)
    assert launch, doc[:200]
    if launch.group(1) != "serve":  # every other command with a config writes a run directory
        assert "--workdir=" in doc


@pytest.mark.parametrize("name", sorted(RLCC))
@pytest.mark.parametrize("reward", REWARDS)
def test_paper_run_trains_its_model_reward_and_learning_rate(name, reward):
    hf_id, lr = RLCC[name]
    c = load_config(_spec(name, reward))
    assert c.model.hf_id == hf_id and hf_id in _model_presets()
    assert c.reward.preset == reward
    assert c.optim.learning_rate == pytest.approx(lr)
    # PAPER.md's GRPO defaults, the same in every paper run.
    assert (c.rollout.group_size, c.rollout.temperature, c.rollout.max_new_tokens) == (8, 1.0, 2048)
    assert (c.loss.eps_low, c.loss.eps_high, c.loss.beta) == (0.2, 0.2, 0.0)
    assert c.optim.schedule == "constant" and c.data.source == "deepmath"
    assert c.data.train_size == 16_000 and not c.model.scratch.enabled
    # No default for the user's files: the trainer refuses an empty path with a clear message.
    assert c.model.path == "" and c.data.path == ""


def test_no_arg_is_corea():
    for name in RLCC:
        assert load_config(_spec(name, None)).reward.preset == "corea"


@pytest.mark.parametrize("group_size", [4, 8, 16])
def test_group_size_ablation_keeps_sequences_per_micro_batch(group_size):
    c = load_config(_spec("rlcc_group_size.py", str(group_size)))
    main = load_config(_spec("rlcc_qwen7b.py", "corea"))
    assert c.rollout.group_size == group_size and c.reward.preset == "corea"
    rows = c.train.prompts_per_step * group_size // c.train.micro_batches
    assert rows == main.train.prompts_per_step * 8 // main.train.micro_batches
    assert c.train.prompts_per_step == main.train.prompts_per_step
    assert c.model.hf_id == main.model.hf_id and c.optim.learning_rate == main.optim.learning_rate


def test_smoke_variant_keeps_the_reward_and_takes_smoke_py_sizes():
    smoke = load_config(_spec("smoke.py", None))
    c = load_config(_spec("rlcc_qwen1_5b.py", "brier,smoke"))
    assert c.reward.preset == "brier" and c.model.scratch.enabled
    for key in ("data", "rollout", "optim", "train", "model"):
        assert c[key].to_dict() == {**smoke[key].to_dict(), **_extra(key, c)}
    g16 = load_config(_spec("rlcc_group_size.py", "16,smoke"))
    assert g16.rollout.group_size == 16 and g16.model.scratch.enabled


def _extra(key, c):
    return {"hf_id": c.model.hf_id} if key == "model" else {}


@pytest.mark.parametrize("arg", ["bogus", "corea,brier", "corea,smoke,x"])
def test_unknown_arg_is_an_error_naming_the_choices(arg):
    with pytest.raises(ConfigError, match="rlvr|brier|corea"):
        load_config(_spec("rlcc_qwen7b.py", arg))


def test_smoke_variant_trains_end_to_end(tmp_path, capsys):
    """One representative paper config, shrunk: the KL ablation (the reward with most options)."""
    workdir = tmp_path / "run"
    rc = cli.main(
        ["train", f"--config={_spec('rlcc_qwen7b.py', 'corea_kl,smoke')}", f"--workdir={workdir}"]
    )
    assert rc == 0
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert len([line for line in lines if '"step"' in line]) >= 3
    assert (workdir / "export" / "config.json").is_file()
    assert '"corea_kl"' in (workdir / "config.json").read_text()


def test_llama_smoke_trains_a_tiny_llama_family_model(tmp_path):
    """The Llama config's smoke run uses a from-scratch model of its own family."""
    import json

    c = load_config(_spec("rlcc_llama8b.py", "rlvr,smoke"))
    assert c.model.scratch.spec.family == "llama"
    assert load_config(_spec("rlcc_qwen7b.py", "smoke")).model.scratch.spec.family == "qwen2"
    workdir = tmp_path / "run"
    spec = _spec("rlcc_llama8b.py", "rlvr,smoke")
    assert cli.main(["train", f"--config={spec}", f"--workdir={workdir}",
                     "--config.train.steps=1"]) == 0  # fmt: skip
    hf = json.loads((workdir / "export" / "config.json").read_text())
    assert hf["architectures"] == ["LlamaForCausalLM"] and hf["tie_word_embeddings"] is False
    from corea_jax.models import load_tokenizer, render_chat

    text = render_chat(load_tokenizer(workdir / "export"), [{"role": "user", "content": "2+2"}])
    assert text == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n2+2<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def _model_presets():
    from corea_jax.models import PRESETS

    return PRESETS


# -- tpu/ launch kit ---------------------------------------------------------------------------

TPU = REPO / "tpu"
ENV = dict(PROJECT_ID="proj", ZONE="us-east5-a", TPU_NAME="corea", ACCELERATOR_TYPE="v5p-8")
SCRIPTS = {  # script -> (arguments, the environment it requires, a string its output must hold)
    "create.sh": ([], ENV, "tpu-vm create corea"),
    "install.sh": ([], ENV, "tpu-vm ssh corea"),
    "download.sh": (["Qwen/Qwen2.5-7B-Instruct"], ENV, "Qwen2.5-7B-Instruct"),
    "ssh.sh": (["hostname"], ENV, "--worker=all"),
    "launch.sh": (
        ["configs/rlcc_qwen7b.py:corea", "runs/q7", "--config.model.path=models/Qwen"],
        ENV,
        "corea-jax/configs/rlcc_qwen7b.py:corea",
    ),
    "slurm.sbatch": (["configs/rlcc_qwen7b.py:corea", "runs/q7"], {"COREA_VENV": "/v"}, "srun"),
}


def _run_script(name, args, env):
    clean = {k: v for k, v in os.environ.items() if k not in {*ENV, "COREA_VENV"}}
    return subprocess.run(
        ["bash", str(TPU / name), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_every_script_is_covered():
    scripts = sorted(p.name for p in TPU.iterdir() if p.suffix in (".sh", ".sbatch"))
    assert sorted(SCRIPTS) == [s for s in scripts if s != "lib.sh"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_dry_run_prints_the_commands(name):
    args, env, expected = SCRIPTS[name]
    out = _run_script(name, ["--dry-run", *args], env)
    assert out.returncode == 0, out.stderr
    assert expected in out.stdout.replace("\\", "")
    assert out.stderr == ""


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_missing_variable_is_a_one_line_error_naming_it(name):
    args, env, _ = SCRIPTS[name]
    missing = "ZONE" if "ZONE" in env else "COREA_VENV"
    out = _run_script(name, ["--dry-run", *args], {k: v for k, v in env.items() if k != missing})
    assert out.returncode != 0 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and missing in out.stderr, out.stderr


def test_launch_refuses_a_config_outside_configs():
    out = _run_script("launch.sh", ["--dry-run", "/tmp/x.py", "runs/x"], ENV)
    assert out.returncode == 2 and "configs/FILE.py" in out.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_are_shellcheck_clean():
    files = sorted(str(p) for p in TPU.iterdir() if p.suffix in (".sh", ".sbatch"))
    out = subprocess.run(
        ["shellcheck", "-x", *files], capture_output=True, text=True, cwd=TPU, timeout=60
    )
    assert out.returncode == 0, out.stdout


def test_readme_launch_commands_name_configs_that_build():
    readme = (TPU / "README.md").read_text()
    specs = re.findall(r"^tpu/launch\.sh (configs/\S+)", readme, flags=re.M)
    runs = [s for s in specs if s.startswith("configs/rlcc_")]
    assert len(runs) == 3 * len(REWARDS) + 2  # every model x reward, plus G=4 and G=16
    for spec in specs:
        load_config(str(REPO / spec))
