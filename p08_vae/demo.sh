#!/usr/bin/env bash
# p08_vae quick demo: a short VAE run on real MNIST digits, then samples and an interpolation from it.
set -euo pipefail
start=$SECONDS
run_vae_train --preset quick | tee /tmp/p08_demo.log
run=$(grep '^run: ' /tmp/p08_demo.log | tail -1 | cut -d' ' -f2)
dlm headline p08_vae "$run" --seconds $((SECONDS - start))
run_vae_sample "$run" --n 4
run_vae_interpolate "$run" --from 3 --to 8 --steps 8
