#!/usr/bin/env bash
# p01_autodiff quick demo (run from the repo root): an MLP trained by the numpy autodiff engine on real digits,
# then the 2-D spiral with its decision-boundary plot. About 15 s on 2 CPU cores.
set -euo pipefail
RUN="${DLM_RUNS:-runs}/p01_autodiff/demo-quick"
rm -rf "$RUN"
start=$SECONDS
echo "-- run_autodiff_demo --preset quick (sklearn 8x8 digits, 10 epochs)"
run_autodiff_demo --preset quick --run-dir "$RUN"
quick_s=$((SECONDS - start))
echo "-- run_autodiff_demo --dataset spiral --epochs 20"
run_autodiff_demo --dataset spiral --epochs 20
dlm headline p01_autodiff "$RUN" --seconds "$quick_s"
