#!/usr/bin/env bash
# Creates a TPU VM or pod slice.
#
#   PROJECT_ID=... ZONE=... TPU_NAME=... ACCELERATOR_TYPE=v5p-8 tpu/create.sh [--dry-run]
#
# RUNTIME_VERSION is the TPU software version; by default the one Google lists for the
# accelerator's generation. SPOT=1 asks for Spot capacity (cheaper, may be preempted).
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; }

parse_args "$@"
((${#ARGS[@]} == 0)) || die "unexpected argument: ${ARGS[0]} (settings come from the environment)"
require_env PROJECT_ID ZONE TPU_NAME ACCELERATOR_TYPE
need_gcloud

if [[ -z "${RUNTIME_VERSION:-}" ]]; then
  case "$ACCELERATOR_TYPE" in
    v6e-*) RUNTIME_VERSION=v2-alpha-tpuv6e ;;
    v5p-*) RUNTIME_VERSION=v2-alpha-tpuv5 ;;
    v5litepod-*) RUNTIME_VERSION=v2-alpha-tpuv5-lite ;;
    v2-* | v3-* | v4-*) RUNTIME_VERSION=tpu-ubuntu2204-base ;;
    *) die "no default RUNTIME_VERSION for ACCELERATOR_TYPE=$ACCELERATOR_TYPE: set it" ;;
  esac
fi

tpu_flags
extra=()
[[ "${SPOT:-0}" == 1 ]] && extra+=(--spot)
run gcloud compute tpus tpu-vm create "$TPU_NAME" "${TPU_FLAGS[@]}" \
  --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION" "${extra[@]}"
