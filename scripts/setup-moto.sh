#!/usr/bin/env bash
# Makes a moto server (the AWS mock the Secrets Manager tests run against) available, installing it into a
# project-local venv when none is found. Idempotent: a second run only prints where moto is.
# Never fails the caller for a missing Python: the AWS tests then skip and say why.
set -euo pipefail

MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
script="${BASH_SOURCE[0]}"
[[ "$script" == */* ]] || script="./$script"
root="$(cd "${script%/*}/.." && pwd)"
venv="$root/.venv-moto"

if [[ -x "$venv/bin/moto_server" ]]; then
  echo "setup-moto: moto_server at $venv/bin/moto_server ($("$venv/bin/python" -m pip show moto 2>/dev/null | sed -n 's/^Version: //p'))"
  exit 0
fi
if command -v moto_server >/dev/null 2>&1; then
  echo "setup-moto: moto_server on PATH at $(command -v moto_server)"
  exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "setup-moto: python3 not found; moto not installed, the AWS Secrets Manager tests will be skipped"
  exit 0
fi

echo "setup-moto: installing moto[server]==$MOTO_VERSION into $venv"
# A venv that an interrupted run left without moto_server is rebuilt from scratch.
rm -rf "$venv"
if ! python3 -m venv "$venv"; then
  rm -rf "$venv"
  echo "setup-moto: python3 -m venv failed (install python3-venv); the AWS Secrets Manager tests will be skipped"
  exit 0
fi
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"; then
  rm -rf "$venv"
  echo "setup-moto: pip install moto[server]==$MOTO_VERSION failed" >&2
  exit 1
fi
echo "setup-moto: moto_server at $venv/bin/moto_server ($MOTO_VERSION)"
