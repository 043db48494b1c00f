#!/usr/bin/env bash
# Starts `corea-jax train` on every worker of the slice, detached (nohup): one process per host,
# all with the same arguments; JAX finds the other hosts of a pod slice by itself.
#
#   PROJECT_ID=... ZONE=... TPU_NAME=... tpu/launch.sh [--dry-run] CONFIG[:ARG] WORKDIR \
#       [--config.KEY=VALUE ...]
#
# CONFIG is a path inside the checkout (configs/rlcc_qwen7b.py:corea). WORKDIR and relative
# paths in overrides are relative to the login directory on the workers (tpu/download.sh puts
# models in models/ and data in data/). Each worker logs to ~/corea-logs/NAME.log, NAME being
# WORKDIR's last part. Every hyperparameter is in the config file; this script only passes on
# what it is given.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

parse_args "$@"
((${#ARGS[@]} >= 2)) || die "expected CONFIG[:ARG] WORKDIR [--config.KEY=VALUE ...]"
config="${ARGS[0]}" workdir="${ARGS[1]}"
overrides=("${ARGS[@]:2}")
[[ "$config" == configs/*.py || "$config" == configs/*.py:* ]] ||
  die "CONFIG must be configs/FILE.py[:ARG], got: $config"
for o in "${overrides[@]}"; do
  [[ "$o" == --config.*=* ]] || die "expected --config.KEY=VALUE, got: $o"
done
require_env PROJECT_ID ZONE TPU_NAME
need_gcloud
tpu_flags

name="$(basename "$workdir")"
train=("$REMOTE_VENV/bin/corea-jax" train --config="$REMOTE_DIR/$config" --workdir="$workdir"
  "${overrides[@]}")
on_all_workers "mkdir -p corea-logs && nohup $(printf '%q ' "${train[@]}")\
> corea-logs/$name.log 2>&1 < /dev/null & echo \"\$(hostname): started, log ~/corea-logs/$name.log\""
