#!/usr/bin/env bash
# Runs every hermet test. Installs (apt) and starts what the tests need when it is
# missing, so it works on a bare Debian/Ubuntu machine with Rust as well as on ours:
#   - PostgreSQL (the postgres half of the integration tests), on 127.0.0.1:5432
#   - redis-server (the multi-node gateway tests start their own on free loopback ports)
#   - tansu, an Apache-Kafka-compatible broker written in Rust (the Kafka tests start
#     their own brokers on free loopback ports), installed with `cargo install` into
#     ~/.cache/hermet/tools and reused by later runs
# Environment: PG_TEST_URL overrides the PostgreSQL server the tests create their
# databases on (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=""
apt_install() {
    if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ── toolchain pieces the build needs (bundled SQLite is C) ──
command -v cc >/dev/null || { log "installing a C compiler"; apt_install build-essential; }
# librdkafka is built with OpenSSL (TLS and SCRAM to Kafka): its headers, found by pkg-config
pkg-config --exists openssl 2>/dev/null || { log "installing OpenSSL's headers"; apt_install libssl-dev pkg-config; }

# ── PostgreSQL ──
if ! command -v pg_ctlcluster >/dev/null && ! command -v pg_isready >/dev/null; then
    log "installing PostgreSQL"
    apt_install postgresql postgresql-client
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    log "starting PostgreSQL"
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$version" ] && command -v pg_ctlcluster >/dev/null; then
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root service postgresql start
    else
        as_root service postgresql start
    fi
    for _ in $(seq 1 60); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
    pg_isready -h 127.0.0.1 -p 5432 -q || { echo "PostgreSQL did not start" >&2; exit 1; }
fi
if [ -z "${PG_TEST_URL:-}" ]; then
    PG_TEST_URL=postgres://postgres@127.0.0.1:5432/postgres
    if ! psql "$PG_TEST_URL" -Atqc 'SELECT 1' >/dev/null 2>&1; then
        # A stock install asks for a password over TCP: give the postgres role one.
        as_root su postgres -c "psql -q -c \"ALTER ROLE postgres PASSWORD 'postgres'\"" >/dev/null
        PG_TEST_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres
    fi
fi
export PG_TEST_URL
psql "$PG_TEST_URL" -Atqc 'SELECT 1' >/dev/null

drop_test_databases() {
    psql "$PG_TEST_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'hermet\_t\_%'" 2>/dev/null |
        while read -r db; do psql "$PG_TEST_URL" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true; done
}
drop_test_databases
trap drop_test_databases EXIT

# ── Redis (binary only: tests start their own servers, one of them with TLS: Debian's
# redis-server is built with it) ──
command -v redis-server >/dev/null || { log "installing Redis"; apt_install redis-server; }

# ── tansu (Kafka-protocol broker) ──
# 0.6.0 with its libsql (file) storage engine: its default features have no durable
# engine, and its memory engine mis-resumes group offsets. --locked pins the
# dependencies it was released with. A cold install takes about 12 minutes here.
TOOLS="${HERMET_TOOLS_DIR:-$HOME/.cache/hermet/tools}"
export TANSU_BIN="${TANSU_BIN:-$TOOLS/bin/tansu}"
if [ ! -x "$TANSU_BIN" ]; then
    log "installing tansu 0.6.0 into $TOOLS"
    cargo install tansu --version 0.6.0 --features libsql --locked --root "$TOOLS"
fi

# ── checks and tests ──
log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The domain builds on its own, without the HTTP layer's OpenAPI feature.
cargo clippy -p hermet-domain --all-targets --quiet -- -D warnings

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi

log "schemathesis (the API against its OpenAPI document)"
scripts/schemathesis.sh
