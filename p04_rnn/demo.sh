#!/usr/bin/env bash
# p04_rnn quick demo (run from the repo root): a small character LSTM on Shakespeare for 400 steps, its test
# bits per character beside the Kneser-Ney 5-gram, then samples at two temperatures. About a minute on 2 CPU cores.
set -euo pipefail
RUN="${DLM_RUNS:-runs}/p04_rnn/demo-quick"
rm -rf "$RUN"
start=$SECONDS
echo "-- run_rnn_train --preset quick"
DLM_NO_PROGRESS=1 run_rnn_train --preset quick --run-dir "$RUN"
dlm headline p04_rnn "$RUN" --seconds $((SECONDS - start))
echo "-- run_rnn_generate $RUN --seed-text 'HAMLET.' --length 200 --temperature 0.8 --top-k 20"
run_rnn_generate "$RUN" --seed-text "HAMLET." --length 200 --temperature 0.8 --top-k 20
echo "-- run_rnn_generate $RUN --seed-text 'HAMLET.' --length 200 --temperature 0.5 --top-p 0.9"
run_rnn_generate "$RUN" --seed-text "HAMLET." --length 200 --temperature 0.5 --top-p 0.9
