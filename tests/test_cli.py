"""The console script: every subcommand answers --help; overrides are typed and checked."""

import subprocess
import sys
import textwrap

import pytest

from corea_jax import cli
from corea_jax.cli.config import ConfigError, load_config


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert command in capsys.readouterr().out


def test_python_dash_m_runs_the_same_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "corea_jax", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in cli.COMMANDS:
        assert command in out


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "exp.py"
    path.write_text(
        textwrap.dedent(
            """
            import ml_collections

            def get_config(arg=None):
                c = ml_collections.ConfigDict()
                c.size = arg or "small"
                c.train = ml_collections.ConfigDict(dict(lr=1e-6, steps=10, use_kl=False))
                c.tags = ("a", "b")
                return c
            """
        )
    )
    return path


def test_overrides_keep_types(config_file):
    config = load_config(
        f"{config_file}:big",
        ["train.lr=3e-6", "train.steps=20", "train.use_kl=true", "tags=('x',)"],
    )
    assert config.size == "big"
    assert config.train.lr == 3e-6 and isinstance(config.train.lr, float)
    assert config.train.steps == 20 and config.train.use_kl is True
    assert config.tags == ("x",)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=1", "train.lrr"),
        ("nope.lr=1", "nope"),
        ("train.steps=ten", "train.steps=ten"),
        ("train.steps", "KEY=VALUE"),
    ],
)
def test_bad_overrides_name_the_key(config_file, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(str(config_file), [override])


def test_missing_config_file_is_one_line_error(tmp_path, capsys):
    assert cli.main(["train", f"--config={tmp_path}/missing.py", f"--workdir={tmp_path}/w"]) == 2
    err = capsys.readouterr().err
    assert "missing.py" in err and len(err.strip().splitlines()) == 1
