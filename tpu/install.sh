#!/usr/bin/env bash
# Installs this checkout (committed files plus uncommitted edits to tracked files) as
# corea-jax[tpu] on every worker: ~/corea-jax holds the source and configs/, ~/corea-venv a
# Python 3.11 venv made by uv (the TPU images ship Python 3.10; corea-jax needs >= 3.11).
#
#   PROJECT_ID=... ZONE=... TPU_NAME=... tpu/install.sh [--dry-run]
#
# Run it again after changing the code: it replaces ~/corea-jax (models and data live
# elsewhere, see tpu/download.sh) and updates the venv.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

parse_args "$@"
((${#ARGS[@]} == 0)) || die "unexpected argument: ${ARGS[0]} (settings come from the environment)"
require_env PROJECT_ID ZONE TPU_NAME
need_gcloud
tpu_flags

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tarball="${TMPDIR:-/tmp}/corea-jax-src.tar.gz"
# The tree to ship: `git stash create` snapshots edits to tracked files without touching the
# work tree (it prints nothing when there are none). It writes a git object, so not under --dry-run.
if ((DRY_RUN)); then
  tree=STASH_OR_HEAD  # stands for the snapshot, or HEAD
else
  tree="$(git -C "$repo" stash create)"
fi
run git -C "$repo" archive --format=tar.gz -o "$tarball" "${tree:-HEAD}"
run gcloud compute tpus tpu-vm scp "$tarball" "$TPU_NAME:corea-jax-src.tar.gz" \
  "${TPU_FLAGS[@]}" --worker=all
on_all_workers "rm -rf $REMOTE_DIR.new && mkdir $REMOTE_DIR.new \
&& tar -xzf corea-jax-src.tar.gz -C $REMOTE_DIR.new && rm -rf $REMOTE_DIR \
&& mv $REMOTE_DIR.new $REMOTE_DIR && python3 -m pip install --user --quiet --upgrade uv \
&& ~/.local/bin/uv venv --allow-existing --python 3.11 $REMOTE_VENV \
&& ~/.local/bin/uv pip install --python $REMOTE_VENV/bin/python './${REMOTE_DIR}[tpu]' \
&& $REMOTE_VENV/bin/python -c 'import jax; print(jax.process_index(), jax.devices())'"
