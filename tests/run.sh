#!/usr/bin/env bash
# The test command: bash tests/run.sh [PYTHON] [PYTEST_ARGS...]
#
# Creates (or reuses) a virtual environment .venv-pyX.Y for the given interpreter (default
# python3), installs the package with its `test` extra, checks lint and formatting with ruff, and
# runs the test suite. On Python 3.11 the extra brings the pinned PyTorch CPU reference; on newer
# Pythons the PyTorch parity tests skip with a visible reason.
set -euo pipefail
cd "$(dirname "$0")/.."

py=${1:-python3}
[ $# -gt 0 ] && shift

# A pyenv shim may refuse an interpreter that is installed but not selected; find it instead.
if ! "$py" -c 'import sys' >/dev/null 2>&1; then
  found=""
  if command -v pyenv >/dev/null 2>&1; then
    want=${py#python}
    for dir in "$(pyenv root)"/versions/"$want"*; do
      [ -x "$dir/bin/$py" ] && found="$dir/bin/$py"
    done
  fi
  [ -n "$found" ] || { echo "tests/run.sh: interpreter '$py' not found" >&2; exit 2; }
  py=$found
fi

ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv=".venv-py$ver"
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv with $py"
  "$py" -m venv "$venv"
fi
echo "== installing corea-jax[test] into $venv"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q -e ".[test]"

echo "== ruff"
"$venv/bin/ruff" check corea_jax tests benchmarks configs
"$venv/bin/ruff" format --check corea_jax tests benchmarks configs

echo "== pytest on Python $ver ($("$venv/bin/python" -c 'import jax; print("jax", jax.__version__)'))"
exec "$venv/bin/python" -m pytest -n 2 -q "$@"
