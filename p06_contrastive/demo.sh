#!/usr/bin/env bash
# p06 quick demo: train a small contrastive encoder on 4,000 real Debian package descriptions, index them
# with FAISS HNSW, search by meaning, and compare with BM25 / TF-IDF on the held-out queries of that subset.
set -euo pipefail
RUN="${DLM_RUNS:-runs}/p06_contrastive/demo-quick"
rm -rf "$RUN"
run_contrastive_train --preset quick --run-dir "$RUN"
run_build_index "$RUN" --index hnsw
run_semantic_search "solar energy" -k 5 --index "$RUN/index-hnsw"
run_semantic_search "play chess against the computer" -k 5 --index "$RUN/index-hnsw"
run_retrieval_evaluate "$RUN" --no-faiss --tsne-points 0
