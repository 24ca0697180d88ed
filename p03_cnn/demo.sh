#!/usr/bin/env bash
# p03_cnn quick demo (run from the repo root): a small ResNet on 8k Fashion-MNIST images for 3 epochs beside
# the logistic-regression baseline, the evaluation report, a prediction on a PNG and an ONNX bundle export
# (named fashion-cnn-demo so it never shadows the real fashion-cnn bundle). About 1.5 min on 2 lightly loaded cores.
set -euo pipefail
RUN="${DLM_RUNS:-runs}/p03_cnn/demo-quick"
rm -rf "$RUN"
start=$SECONDS
echo "-- run_cnn_train --preset quick"
DLM_NO_PROGRESS=1 run_cnn_train --preset quick --run-dir "$RUN"
echo "-- run_cnn_evaluate $RUN"
run_cnn_evaluate "$RUN"
dlm headline p03_cnn "$RUN" --seconds $((SECONDS - start))
IMG="$RUN/test-image-0.png"
PY_BIN="$(dirname "$(command -v run_cnn_train)")/python"
"$PY_BIN" - "$IMG" <<'PY'
import sys
from PIL import Image
from dlm_core.data import load_dataset
ds = load_dataset("fashion-mnist")
Image.fromarray(ds.test.x[0]).resize((112, 112)).save(sys.argv[1])
print(f"wrote {sys.argv[1]} (test image 0, true class: {ds.classes[ds.test.y[0]]}, upscaled to 112x112)")
PY
echo "-- run_cnn_predict $RUN $IMG"
run_cnn_predict "$RUN" "$IMG"
echo "-- run_cnn_export $RUN --name fashion-cnn-demo --overwrite"
run_cnn_export "$RUN" --name fashion-cnn-demo --version quick --overwrite
