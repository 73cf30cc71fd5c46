#!/usr/bin/env bash
# Installs everything the test suite needs, then runs it: the README's test command, and
# what .ci/run calls. Safe to run again: each step is skipped when already done.
#   scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

log "python packages"
python3 -m pip install -q --disable-pip-version-check -e '.[example,test]'

# PostgreSQL server binaries: the native backend and the test fixtures run real clusters.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  log "PostgreSQL server (apt)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "PostgreSQL server binaries are missing; install postgresql-15 (needs root)" >&2
    exit 1
  fi
fi

# The docker tests need postgres:15. Real users pull it; a machine without a registry
# builds it from Debian packages with the shared script.
if docker info >/dev/null 2>&1; then
  if ! docker image inspect postgres:15 >/dev/null 2>&1; then
    log "postgres:15 image"
    builder="../shared/images/build-postgres-image"
    if [ -x "$builder" ]; then "$builder" postgres:15; else docker pull postgres:15; fi
  fi
  # The many-services tests build their images FROM debian:bookworm-slim (a local base
  # here, pulled by real users).
  if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    log "debian:bookworm-slim image"
    base="../shared/images/build-debian-base"
    if [ -x "$base" ]; then "$base" debian:bookworm-slim; else docker pull debian:bookworm-slim; fi
  fi
else
  echo "note: no Docker engine answers; tests marked 'docker' will be skipped" >&2
fi

# The remote-cache tests (marker 'registry') run a real OCI registry: the CNCF
# Distribution registry from Debian's docker-registry package, started by
# ../shared/registry/start-registry (which installs it too when missing).
if ! command -v docker-registry >/dev/null 2>&1 || ! command -v htpasswd >/dev/null 2>&1; then
  log "OCI registry (apt: docker-registry, apache2-utils)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      docker-registry apache2-utils >/dev/null
  else
    echo "note: docker-registry is missing (needs root to install); tests marked 'registry' will be skipped" >&2
  fi
fi

log "lint, types and layers"
python3 -m ruff check devenv tests bench
python3 -m mypy devenv
lint-imports

log "tests"
exec python3 -m pytest -p no:cacheprovider -n 2 "$@"
