# shellcheck shell=bash
# Shared by the tpu/*.sh scripts (sourced, never run): flag parsing, the environment check,
# and `run`, which prints instead of running under --dry-run.

set -euo pipefail

DRY_RUN=0
ARGS=()

# One line per variable: what it is, with an example.
describe() {
  case "$1" in
    PROJECT_ID) echo "the Google Cloud project, e.g. my-project" ;;
    ZONE) echo "the TPU zone, e.g. us-east5-a" ;;
    TPU_NAME) echo "the TPU VM / pod slice name, e.g. corea" ;;
    ACCELERATOR_TYPE) echo "the TPU type, e.g. v5p-8, v6e-8, v5litepod-16" ;;
    *) echo "see tpu/README.md" ;;
  esac
}

die() {
  echo "$(basename "$0"): error: $*" >&2
  exit 2
}

# parse_args "$@": takes --dry-run and --help out; the rest lands in ARGS.
parse_args() {
  local a
  for a in "$@"; do
    case "$a" in
      --dry-run) DRY_RUN=1 ;;
      -h | --help) usage; exit 0 ;;
      *) ARGS+=("$a") ;;
    esac
  done
}

# require_env VAR...: one line naming every unset variable, then exit 2.
require_env() {
  local v missing=()
  for v in "$@"; do
    [[ -n "${!v:-}" ]] || missing+=("$v ($(describe "$v"))")
  done
  if ((${#missing[@]})); then
    local IFS=';'
    die "not set: ${missing[*]}"
  fi
}

# run CMD...: runs it, or under --dry-run prints it, shell-quoted, on one line.
run() {
  if ((DRY_RUN)); then
    printf '%q ' "$@" | sed 's/ $//'
    echo
  else
    "$@"
  fi
}

need_gcloud() {
  ((DRY_RUN)) || command -v gcloud >/dev/null || die "gcloud not found (install the Google Cloud CLI)"
}

# The gcloud flags every TPU command takes.
tpu_flags() {
  TPU_FLAGS=(--zone="$ZONE" --project="$PROJECT_ID")
}

# on_all_workers COMMAND: runs one shell command line on every worker of the slice, at once.
on_all_workers() {
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${TPU_FLAGS[@]}" --worker=all --command="$1"
}

# Where things live on each worker, relative to the login directory.
REMOTE_DIR="${REMOTE_DIR:-corea-jax}"  # the checkout (configs/ is read from here)
REMOTE_VENV="${REMOTE_VENV:-corea-venv}"  # Python 3.11 venv with corea-jax[tpu]
