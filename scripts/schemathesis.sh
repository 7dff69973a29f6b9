#!/usr/bin/env bash
# Checks the API against its OpenAPI document with schemathesis (every check on): a fresh
# `hermet serve` (the debug binary) on a free port, on a new SQLite file and, when
# PostgreSQL is reachable, on a new PostgreSQL database; a signed-up user's token on
# every request (scripts/schemathesis_hooks.py); the rate limits at their defaults.
# Fails on any failure. scripts/test.sh runs it after the cargo tests; it runs alone too.
#
# Environment:
#   ST_MAX_EXAMPLES  cases per operation and phase (default 40)
#   ST_MAX_TIME      seconds per backend, at most (default 120)
#   ST_SEED          generation seed (default 1; any other explores other cases)
#   ST_BACKENDS      "sqlite postgres" (default; postgres is skipped when unreachable)
#   PG_TEST_URL      the PostgreSQL server (default postgres://postgres@127.0.0.1:5432/postgres)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV="${HERMET_TOOLS_DIR:-$HOME/.cache/hermet}/schemathesis-$SCHEMATHESIS_VERSION"
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-40}"
MAX_TIME="${ST_MAX_TIME:-120}"
SEED="${ST_SEED:-1}"
BACKENDS="${ST_BACKENDS:-sqlite postgres}"
PG_TEST_URL="${PG_TEST_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

log() { printf '\n== %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# ── schemathesis, pinned, in a venv of its own ──
if [ ! -x "$VENV/bin/schemathesis" ]; then
    log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

# ── the server binary the test build uses ──
cargo build --quiet -p hermet --bin hermet
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
HERMET="$TARGET_DIR/debug/hermet"

WORK=$(mktemp -d)
SERVER_PID=""
PG_DB=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [ -n "$PG_DB" ]; then psql "$PG_TEST_URL" -qc "DROP DATABASE IF EXISTS \"$PG_DB\"" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run_backend NAME DATABASE_URL
run_backend() {
    local name=$1 url=$2 port base
    port=$(free_port)
    base="http://127.0.0.1:$port"
    log "schemathesis $SCHEMATHESIS_VERSION on $name ($base)"
    # cheap password hashing, as the integration tests use: the run signs in often
    env -u RUST_LOG HERMET_DATABASE_URL="$url" HERMET_LISTEN="127.0.0.1:$port" HERMET_LOG_LEVEL=warn \
        HERMET_AUTH__ARGON2_MEMORY_KIB=256 HERMET_AUTH__ARGON2_ITERATIONS=1 \
        "$HERMET" serve >"$WORK/$name-server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.2; done
    curl -sf "$base/readyz" >/dev/null || { cat "$WORK/$name-server.log"; echo "hermet did not start" >&2; return 1; }

    export SCHEMATHESIS_HERMET_BASE="$base" SCHEMATHESIS_HERMET_ACCOUNT="contract@example.com" SCHEMATHESIS_HERMET_PASSWORD="contract-password-1"
    curl -sf -XPOST "$base/api/v1/auth/sign-up" -H 'content-type: application/json' \
        -d "{\"account\":\"$SCHEMATHESIS_HERMET_ACCOUNT\",\"accountType\":\"email\",\"credential\":\"$SCHEMATHESIS_HERMET_PASSWORD\",\"nickname\":\"Contract\"}" >/dev/null

    local status=0 started=$SECONDS
    SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$PWD/scripts" \
        "$VENV/bin/schemathesis" --config-file "$PWD/scripts/schemathesis.toml" run "$base/api/v1/openapi.json" \
        --checks all --max-examples "$MAX_EXAMPLES" --max-time "$MAX_TIME" --seed "$SEED" \
        --workers 1 --no-color --report junit --report-dir "$WORK/report-$name" || status=$?
    echo "schemathesis on $name: exit $status after $((SECONDS - started)) s"
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    if grep -q 'panicked' "$WORK/$name-server.log"; then
        grep -m5 'panicked' "$WORK/$name-server.log"
        status=1
    fi
    return "$status"
}

failed=0
for backend in $BACKENDS; do
    case $backend in
        sqlite) run_backend sqlite "sqlite://$WORK/hermet.db" || failed=1 ;;
        postgres)
            if ! psql "$PG_TEST_URL" -Atqc 'SELECT 1' >/dev/null 2>&1; then
                echo "PostgreSQL at $PG_TEST_URL is not reachable: the postgres run is skipped"
                continue
            fi
            PG_DB="hermet_t_st_$$_$RANDOM"
            psql "$PG_TEST_URL" -qc "CREATE DATABASE \"$PG_DB\"" >/dev/null
            pg_url=$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$PG_TEST_URL" "$PG_DB")
            run_backend postgres "$pg_url" || failed=1
            psql "$PG_TEST_URL" -qc "DROP DATABASE IF EXISTS \"$PG_DB\"" >/dev/null 2>&1 || true
            PG_DB=""
            ;;
        *) echo "unknown backend $backend" >&2; exit 2 ;;
    esac
done
if [ "$failed" -ne 0 ]; then
    echo "schemathesis found failures" >&2
    exit 1
fi
