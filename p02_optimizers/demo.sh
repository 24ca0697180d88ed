#!/usr/bin/env bash
# p02_optimizers quick demo (run from the repo root): hand-written optimizers on 2D surfaces, then a real
# network's loss landscape on sklearn digits. About a minute on 2 CPU cores; outputs under runs/p02_optimizers*/.
set -euo pipefail
echo "-- one optimizer, one surface"
run_optimizer_playground --surface rosenbrock --optimizer sgd --steps 5000
echo "-- momentum vs SGD in an ill-conditioned ravine (paths PNG, loss plot, GIF, table)"
run_optimizer_playground --surface ravine --compare sgd,momentum,nesterov,adam --steps 400 --frames 20
echo "-- learning rate x optimizer sweep (CSV + heatmap)"
run_optimizer_playground --surface rosenbrock --sweep --compare sgd,momentum,rmsprop,adam --steps 500
echo "-- real network: plain SGD vs Adam on digits, loss slices and sharpness"
RUN="${DLM_RUNS:-runs}/p02_optimizers/demo-landscape-quick"
rm -rf "$RUN"
start=$SECONDS
run_loss_landscape --preset quick --run-dir "$RUN"
dlm headline p02_optimizers "$RUN" --seconds $((SECONDS - start))
