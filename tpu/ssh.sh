#!/usr/bin/env bash
# Runs one shell command line on every worker (from the login directory), e.g. to follow a run:
#
#   PROJECT_ID=... ZONE=... TPU_NAME=... tpu/ssh.sh [--dry-run] 'tail -n 20 corea-logs/*.log'
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; }

parse_args "$@"
((${#ARGS[@]} == 1)) || die "expected one command line (quote it)"
require_env PROJECT_ID ZONE TPU_NAME
need_gcloud
tpu_flags
on_all_workers "${ARGS[0]}"
