#!/usr/bin/env bash
# The benchmark, from a fresh checkout: installs what it needs (wrk and nginx from Debian,
# the repo's venv, thumbor 7.8 in its own venv under bench/.peers), then runs every scenario
# (bench/run.py; its options pass through, e.g. --seconds 20 or --only cold; and
# --baseline REV for a before/after of cold renders against an earlier commit).
# About 10 minutes on 2 cores. Results: bench/results/<time>/results.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_http_cache_purge_module.so ] || missing+=(libnginx-mod-http-cache-purge)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -x .venv/bin/imgcdn ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q -e . >/dev/null
fi
PEERS=${BENCH_PEERS:-bench/.peers}
# thumbor runs only in the cold scenario: not installed for an --only list without it.
want_peer=1
prev=
for arg in "$@"; do
  [ "$arg" = --no-peer ] && want_peer=0
  if [ "$prev" = --only ] && [[ ",$arg," != *,cold,* ]]; then want_peer=0; fi
  prev=$arg
done
if [ "$want_peer" = 1 ] && [ ! -x "$PEERS/thumbor-venv/bin/thumbor" ]; then
  python3 -m venv "$PEERS/thumbor-venv"
  "$PEERS/thumbor-venv/bin/pip" install -q thumbor==7.8.0 >/dev/null
fi
export BENCH_PEERS=$PEERS
# --baseline REV: that commit of this repository, in its own worktree and venv under the
# peers folder, is run beside this checkout (cold JPEG and WebP) for a before/after.
args=()
while [ $# -gt 0 ]; do
  if [ "$1" = --baseline ]; then
    rev=$(git rev-parse --verify "$2^{commit}")
    base="$PEERS/baseline-${rev:0:12}"
    if [ ! -x "$base/.venv/bin/imgcdn" ]; then
      rm -rf "$base"
      git worktree prune
      git worktree add -q --detach "$base" "$rev"
      python3 -m venv "$base/.venv"
      "$base/.venv/bin/pip" install -q "$base" >/dev/null
    fi
    args+=(--baseline "$base/.venv/bin/imgcdn")
    shift 2
  else
    args+=("$1")
    shift
  fi
done
exec .venv/bin/python bench/run.py "${args[@]}"
