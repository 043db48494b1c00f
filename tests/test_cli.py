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


def test_overrides_follow_ml_collections_types(config_file):
    """Typed by ml_collections: a typed placeholder takes its type, `KEY VALUE` and a bare
    boolean flag work as on the command line, and the result is locked."""
    from ml_collections import config_dict

    config = load_config(
        f"{config_file}:big", ["--config.train.steps", "7", "--config.train.use_kl", "train.lr=1"]
    )
    assert config.train.steps == 7 and config.train.use_kl is True
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    with pytest.raises(AttributeError):
        config.train.new_key = 1  # locked: a typo in code fails too

    from corea_jax.cli.config import apply_overrides

    c = config_dict.ConfigDict({"top_k": config_dict.placeholder(int)})
    assert apply_overrides(c, ["top_k=5"]).top_k == 5
    with pytest.raises(ConfigError, match="top_k=x"):
        apply_overrides(
            config_dict.ConfigDict({"top_k": config_dict.placeholder(int)}), ["top_k=x"]
        )


def test_config_package_imports_relatively_without_sys_path(tmp_path):
    pkg = tmp_path / "myconfigs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "base.py").write_text(
        "import ml_collections\n\ndef base():\n    return ml_collections.ConfigDict({'lr': 1e-6})\n"
    )
    (pkg / "run.py").write_text("from .base import base\n\ndef get_config():\n    return base()\n")
    before = list(sys.path)
    assert load_config(str(pkg / "run.py"), ["lr=2e-6"]).lr == 2e-6
    assert sys.path == before


def test_cli_key_value_pair_and_unknown_argument(tmp_path, capsys):
    code = cli.main(["train", "--config=configs/smoke.py", "--config.train.stepz", "3",
                     f"--workdir={tmp_path}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "train.stepz" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        cli.main(["train", "--config=configs/smoke.py", "--bogus", f"--workdir={tmp_path}"])


def test_package_exports_resolve_lazily():
    """Every name `corea_jax` exports resolves, and importing the package loads no JAX."""
    code = (
        "import sys, corea_jax; assert 'jax' not in sys.modules, 'jax imported eagerly'; "
        "[getattr(corea_jax, n) for n in corea_jax.__all__]; print(len(corea_jax.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 10


def test_an_unknown_config_argument_is_a_one_line_error(capsys):
    """A config file's own refusal of its ':ARG' (a ValueError in get_config) is reported as
    one line naming the file and the argument, exit 2, not a traceback."""
    from pathlib import Path

    demo = Path(__file__).resolve().parents[1] / "configs" / "demo.py"
    assert cli.main(["demo", f"--config={demo}:nope", "--warmup-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{demo}:nope: get_config failed: ValueError" in err and ":long" in err
