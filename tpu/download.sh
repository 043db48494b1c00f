#!/usr/bin/env bash
# Downloads Hugging Face repos onto every worker: a model to ~/models/NAME, a dataset (with
# --dataset) to ~/data/NAME, NAME being the part after the slash.
#
#   PROJECT_ID=... ZONE=... TPU_NAME=... tpu/download.sh [--dry-run] Qwen/Qwen2.5-7B-Instruct
#   PROJECT_ID=... ZONE=... TPU_NAME=... tpu/download.sh [--dry-run] --dataset zwhe99/DeepMath-103K
#
# Gated repos (Llama 3.1) need your token on the workers first:
#   tpu/ssh.sh "corea-venv/bin/python -c 'import huggingface_hub as h; h.login(token=\"hf_...\")'"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

parse_args "$@"
kind=model dest=models
if ((${#ARGS[@]})) && [[ "${ARGS[0]}" == --dataset ]]; then
  kind=dataset dest=data
  ARGS=("${ARGS[@]:1}")
fi
((${#ARGS[@]} == 1)) || die "expected one Hugging Face repo id, e.g. Qwen/Qwen2.5-7B-Instruct"
repo_id="${ARGS[0]}"
[[ "$repo_id" =~ ^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$ ]] || die "not a repo id: $repo_id"
require_env PROJECT_ID ZONE TPU_NAME
need_gcloud
tpu_flags

on_all_workers "$REMOTE_VENV/bin/python -c \"from huggingface_hub import snapshot_download; \
snapshot_download('$repo_id', repo_type='$kind', local_dir='$dest/${repo_id#*/}')\""
