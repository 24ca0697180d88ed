#!/usr/bin/env bash
# p09_dqn quick demo (about a minute on 2 CPU cores): DQN on CartPole-v1 for 12k steps, then greedy
# evaluation on fresh seeds beside the random policy, and a GIF of one greedy episode.
set -euo pipefail
RUN="${DLM_RUNS:-runs}/p09_dqn/demo-$(date +%Y%m%d-%H%M%S)"
start=$SECONDS
run_dqn_train --preset quick --run-dir "$RUN"
dlm headline p09_dqn "$RUN" --seconds $((SECONDS - start))
run_dqn_eval "$RUN" --episodes 20 --gif "$RUN/episode.gif"
echo "p09_dqn demo: report $RUN/report.md, plots $RUN/training.png, gif $RUN/episode.gif"
