#!/usr/bin/env bash
# p01_autodiff quick demo (run from the repo root): an MLP trained by the numpy autodiff engine on real digits,
# then the 2-D spiral with its decision-boundary plot. About 15 s on 2 CPU cores.
set -euo pipefail
echo "-- run_autodiff_demo --preset quick (sklearn 8x8 digits, 10 epochs)"
run_autodiff_demo --preset quick
echo "-- run_autodiff_demo --dataset spiral --epochs 20"
run_autodiff_demo --dataset spiral --epochs 20
