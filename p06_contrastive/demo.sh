#!/usr/bin/env bash
# p06 quick demo: train two small contrastive encoders (seeds 0 and 1) on 4,000 real Debian package
# descriptions, join them into one ensemble encoder, index it with FAISS HNSW, search by meaning, and compare
# with BM25 / TF-IDF on the held-out queries of that subset; export the search and the section classifier as
# bundles (package-search-demo, package-section-demo: the n-gram section classifier, quick preset) for p10_serving.
set -euo pipefail
ROOT="${DLM_RUNS:-runs}/p06_contrastive"
RUN="$ROOT/demo-quick"
rm -rf "$RUN" "$RUN-seed1" "$RUN-ensemble"
start=$SECONDS
run_contrastive_train --preset quick --run-dir "$RUN"
run_contrastive_train --preset quick --seed 1 --run-dir "$RUN-seed1"
run_contrastive_ensemble "$RUN" "$RUN-seed1" --out "$RUN-ensemble"
run_build_index "$RUN-ensemble" --index hnsw
run_semantic_search "solar energy" -k 5 --index "$RUN-ensemble/index-hnsw"
run_semantic_search "play chess against the computer" -k 5 --index "$RUN-ensemble/index-hnsw"
run_retrieval_evaluate "$RUN" --no-faiss --tsne-points 0
run_retrieval_evaluate "$RUN-ensemble" --no-faiss --tsne-points 0
dlm headline p06_contrastive "$RUN-ensemble" --seconds $((SECONDS - start))
run_contrastive_export "$RUN-ensemble" --name package-search-demo --version quick --overwrite
run_section_classifier --preset quick --name package-section-demo --version quick --overwrite --out "$ROOT/section-quick"
