#!/usr/bin/env bash
# `make demo`: the environment check, the core's tiny end-to-end training, then each project's quick demo.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
echo "== dlm doctor"
dlm doctor
echo "== dlm demo (core: MLP on sklearn digits)"
dlm demo
for d in p[0-9][0-9]_*/; do
  if [ -f "$d/demo.sh" ]; then
    echo "== ${d%/} demo"
    bash "$d/demo.sh"
  fi
done
echo "== demo done; runs are under runs/, bundles under artifacts/"
