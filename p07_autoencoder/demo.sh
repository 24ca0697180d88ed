#!/usr/bin/env bash
# p07 quick demo (run from the repo root): a one-class Fashion-MNIST detector (normal = sneakers) trained on
# 1,500 normal images for 3 epochs, then the detector CLI on its run and on a few raw images, and its bundle
# (fashion-anomaly-demo) for p10_serving.
set -euo pipefail
export DLM_NO_PROGRESS=1
log=$(mktemp)
start=$SECONDS
run_anomaly_train --dataset fashion-oneclass --normal-class 7 --preset quick | tee "$log"
run=$(sed -n 's/^run: //p' "$log" | head -1)
dlm headline p07_autoencoder "$run" --seconds $((SECONDS - start))
run_anomaly_detector "$run"
python - "$run" <<'PY'
import sys, numpy as np
from dlm_core.data import load_dataset
ds = load_dataset("fashion-mnist")
x = np.concatenate([ds.test.x[ds.test.y == 7][:5], ds.test.x[ds.test.y == 8][:5]])  # 5 sneakers, 5 bags
np.save(f"{sys.argv[1]}/demo_inputs.npy", x)
PY
echo "== 5 sneakers then 5 bags:"
run_anomaly_detector "$run" --input "$run/demo_inputs.npy"
run_anomaly_export "$run" --name fashion-anomaly-demo --version quick --overwrite
rm -f "$log"
