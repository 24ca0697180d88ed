import math

import numpy as np

from p06_contrastive.evaluate import first_ranks, mrr_at_k, ndcg_at_k, rank_metrics, recall_at_k, rrf

RANKED = [[3, 1, 2, 0], [0, 1, 2, 3], [9, 8, 7, 6]]
RELEVANT = [{1}, {0}, {5}]


def test_hand_computed_values():
    assert recall_at_k(RANKED, RELEVANT, 1) == 1 / 3
    assert recall_at_k(RANKED, RELEVANT, 2) == 2 / 3
    assert math.isclose(mrr_at_k(RANKED, RELEVANT, 10), (1 / 2 + 1) / 3)
    assert math.isclose(ndcg_at_k(RANKED, RELEVANT, 10), (1 / math.log2(3) + 1) / 3)
    # two relevant documents at ranks 1 and 3: DCG = 1 + 1/2, ideal = 1 + 1/log2(3)
    assert math.isclose(ndcg_at_k([[4, 5, 6]], [{4, 6}], 10), 1.5 / (1 + 1 / math.log2(3)))
    assert recall_at_k([[4, 5, 6]], [{4, 6}], 2) == 0.5
    assert mrr_at_k([[4, 5, 6]], [{6}], 2) == 0.0  # outside the cut-off


def test_rank_metrics_agree_with_the_generic_functions():
    rng = np.random.default_rng(0)
    ids = np.array([rng.permutation(50)[:20] for _ in range(40)])
    rel = rng.integers(0, 50, 40)
    ranks = first_ranks(ids, rel)
    m = rank_metrics(ranks)
    ranked, relevant = ids.tolist(), [{int(r)} for r in rel]
    assert math.isclose(m["recall@10"], recall_at_k(ranked, relevant, 10))
    assert math.isclose(m["mrr@10"], mrr_at_k(ranked, relevant, 10))
    assert math.isclose(m["ndcg@10"], ndcg_at_k(ranked, relevant, 10))
    assert math.isclose(m["recall@1"], recall_at_k(ranked, relevant, 1))


def test_rrf_hand_example():
    a = np.array([[1, 2, 3]])
    b = np.array([[3, 2, 9]])
    # 2: 1/62 + 1/62 ; 3: 1/63 + 1/61 ; 1: 1/61 ; 9: 1/63
    assert rrf([a, b], k=4).tolist() == [[3, 2, 1, 9]] or rrf([a, b], k=4).tolist() == [[2, 3, 1, 9]]
    s2, s3 = 2 / 62, 1 / 63 + 1 / 61
    assert rrf([a, b], k=4)[0, 0] == (3 if s3 > s2 else 2)


def test_per_query_ndcg_and_paired_bootstrap():
    from p06_contrastive.evaluate import paired_bootstrap, per_query_ndcg10, rank_metrics

    ranks = np.array([1, 2, 0, 11, 10, 3])
    per = per_query_ndcg10(ranks)
    assert np.allclose(per, [1.0, 1 / np.log2(3), 0, 0, 1 / np.log2(11), 0.5])
    assert abs(per.mean() - rank_metrics(ranks)["ndcg@10"]) < 1e-12
    same = paired_bootstrap(per, per)
    assert same["mean_diff"] == 0 and same["ci95"] == [0.0, 0.0] and same["p_not_better"] == 1.0
    rng = np.random.default_rng(0)
    b = rng.random(500)
    better = paired_bootstrap(b + 0.05, b)  # better on every query
    assert abs(better["mean_diff"] - 0.05) < 1e-12 and better["p_not_better"] == 0.0
    noisy = paired_bootstrap(b + rng.normal(0, 0.3, 500), b)  # no real difference
    assert noisy["ci95"][0] < 0 < noisy["ci95"][1] and 0.05 < noisy["p_not_better"] < 0.95
