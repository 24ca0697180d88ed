#!/usr/bin/env bash
# p05 demo: the default transformer trained 4 epochs on the real EN->ES Bible pairs (quick preset, ~3 min on one core),
# scored on 200 test pairs beside the baselines, exported to ONNX, then used from the command line.
set -euo pipefail
RUN="${DLM_RUNS:-runs}/p05_transformer/demo-quick"
rm -rf "$RUN"
DLM_THREADS="${DLM_THREADS:-1}" run_transformer_train --preset quick --run-dir "$RUN"
run_transformer_translate --run "$RUN" "In the beginning God created the heavens and the earth." "God is love." \
    --beam 2 --attention "$RUN/attention_demo.png"
