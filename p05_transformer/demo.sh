#!/usr/bin/env bash
# p05 demo: the default transformer trained 4 epochs on the real EN->ES Bible pairs (quick preset, ~3 min on one core),
# scored on 200 test pairs beside the baselines, exported as a bundle (translator-en-es-demo), then used from the
# command line, with torch and with the bundle alone (ONNX Runtime). Four epochs give rough Spanish; where the default
# model was trained and exported here (artifacts/translator-en-es/default), the demo also shows its translation.
set -euo pipefail
RUN="${DLM_RUNS:-runs}/p05_transformer/demo-quick"
rm -rf "$RUN"
start=$SECONDS
DLM_THREADS="${DLM_THREADS:-1}" run_transformer_train --preset quick --no-export --run-dir "$RUN"
dlm headline p05_transformer "$RUN" --seconds $((SECONDS - start))
run_transformer_export "$RUN" --name translator-en-es-demo --version quick --overwrite
run_transformer_translate --run "$RUN" "In the beginning God created the heavens and the earth." "God is love." \
    --beam 2 --attention "$RUN/attention_demo.png"
run_transformer_translate --bundle "${DLM_ARTIFACTS:-artifacts}/translator-en-es-demo/quick" "God is love."
DEFAULT="${DLM_ARTIFACTS:-artifacts}/translator-en-es/default"
if [ -f "$DEFAULT/manifest.json" ]; then
    echo "the same sentences from the default bundle ($DEFAULT: the full default training, not this demo's 4 epochs):"
    run_transformer_translate --bundle "$DEFAULT" "In the beginning God created the heavens and the earth." "God is love."
else
    echo "(the quick model above had 4 epochs; the default one, which translates, is not trained here:" \
         "DLM_THREADS=1 run_transformer_train (~45 CPU-minutes), then run_transformer_export RUN --version default)"
fi
