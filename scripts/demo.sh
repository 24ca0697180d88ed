#!/usr/bin/env bash
# `make demo`: the environment check, the core's tiny end-to-end training, then each project's quick demo. Each
# demo ends with one line setting its quick number beside the default command's (`dlm headline`); the lines are
# repeated together at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "== dlm doctor"
dlm doctor
echo "== dlm demo (core: MLP on sklearn digits)"
dlm demo
for d in p[0-9][0-9]_*/; do
  if [ -f "$d/demo.sh" ]; then
    echo "== ${d%/} demo"
    bash "$d/demo.sh" | tee -a "$log"
  fi
done
echo "== demo done; runs are under runs/, bundles under artifacts/"
echo "== quick demos vs the default commands (make reproduce reruns the defaults; README: what each project shows)"
grep -E '^p[0-9]{2}_[a-z]+ quick' "$log" || true
