#!/usr/bin/env bash
# One render per cold variant across processes: imgcdn serve --workers 2 on file storage,
# ROUNDS rounds of N concurrent requests for a fresh variant each; renders read from
# /metrics (imgcdn_cache_misses_total). Run from the repo root after the README's setup.
set -euo pipefail
N=${N:-20}; ROUNDS=${ROUNDS:-3}; PORT=${PORT:-8097}
PHOTO=${PHOTO:-tests/images/photo.jpg}
DATA=$(mktemp -d)
IMGCDN_DATA_DIR=$DATA .venv/bin/imgcdn serve --port "$PORT" --workers 2 >"$DATA/log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do curl -sf "localhost:$PORT/healthz" >/dev/null && break; sleep 0.1; done
TOKEN=$(cat "$DATA/admin-token")
curl -sf -o /dev/null -T "$PHOTO" -H "Authorization: Bearer $TOKEN" "localhost:$PORT/v1/assets/p.jpg"
for round in $(seq "$ROUNDS"); do
  seq "$N" | xargs -P "$N" -I{} curl -s -o /dev/null -H 'Connection: close' \
    "localhost:$PORT/t/_/p.jpg?w=800&v=r$round"
done
echo "$ROUNDS rounds x $N concurrent cold requests over 2 workers:"
curl -s "localhost:$PORT/metrics" | grep -E "^imgcdn_(cache_misses_total|coalesced_waits_total|cache_hits_total\{level=\"store\"\})"
