import math

import numpy as np
import torch

from p06_contrastive.model import BagEncoder, ContrastiveModel, TextEncoder, info_nce


def _hand_info_nce(q, d, scale, symmetric=True):
    b = len(q)
    sim = scale * q @ d.T
    q2d = [-(sim[i, i] - math.log(sum(math.exp(x) for x in sim[i]))) for i in range(b)]
    d2q = [-(sim[j, j] - math.log(sum(math.exp(sim[i, j]) for i in range(b)))) for j in range(b)]
    return 0.5 * (np.mean(q2d) + np.mean(d2q)) if symmetric else np.mean(q2d)


def test_info_nce_equals_hand_computation():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(4, 5, generator=g, dtype=torch.float64), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(6, 5, generator=g, dtype=torch.float64), dim=-1)  # 2 hard negs
    for scale in (1.0, 14.3):
        for symmetric in (True, False):
            got = info_nce(q, d, scale, symmetric).item()
            assert abs(got - _hand_info_nce(q.numpy(), d.numpy(), scale, symmetric)) < 1e-10
    # perfect alignment with a large scale -> loss near 0; swapping positives makes it large
    eye = torch.eye(4, dtype=torch.float64)
    assert info_nce(eye, eye, 50.0).item() < 1e-6
    assert info_nce(eye, eye[[1, 0, 3, 2]], 50.0).item() > 10


def test_encoder_outputs_unit_vectors_and_ignores_padding():
    torch.manual_seed(0)
    for enc in (TextEncoder(50, dim=16, layers=1, heads=2, max_len=12, dropout=0.0).eval(),
                BagEncoder(50, dim=16, max_len=12, dropout=0.0).eval()):
        ids = torch.tensor([[5, 6, 7, 0, 0, 0], [5, 6, 7, 8, 9, 10]])
        out = enc(ids)
        assert torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5)
        padded_more = torch.tensor([[5, 6, 7, 0, 0, 0, 0, 0, 0]])
        assert torch.allclose(enc(padded_more), out[:1], atol=1e-5)


def test_temperature_is_learnable_and_clamped():
    m = ContrastiveModel(TextEncoder(20, 8, 0, 2, max_len=4), temperature=0.001)
    assert abs(m.temperature - 0.01) < 1e-6 and m.log_scale.requires_grad
    assert not ContrastiveModel(TextEncoder(20, 8, 0, 2, max_len=4), learn_temperature=False).log_scale.requires_grad


def test_tiny_run_learns(tiny_run):
    from dlm_core.runs import RunDir

    path, result = tiny_run
    rows = [r for r in RunDir.open(path).metrics() if "epoch" in r]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.3
    # far better than chance (val corpus ~ 300 docs: random MRR@10 ~ 0.01)
    assert result["best_val_mrr10"] > 0.15
    assert rows[-1]["emb_dim_std"] > 0.02  # no collapse to one point


def test_transformer_encoder_run_learns(tmp_path):
    """--layers 1: the transformer-block encoder trains through the same loop and beats chance."""
    import dataclasses

    from p06_contrastive.config import PRESETS
    from p06_contrastive.model import TextEncoder, build_encoder
    from p06_contrastive.train import run_train

    cfg = dataclasses.replace(PRESETS["tiny"], layers=1, heads=2, hard_negatives=0)
    assert isinstance(build_encoder(cfg, 600), TextEncoder)
    result = run_train(cfg, run_dir=tmp_path / "block", preset="tiny")
    assert result["best_val_mrr10"] > 0.1  # random ~0.01


def test_killed_run_resumes_to_identical_weights(tmp_path, tiny_run):
    """Copy the finished 2-epoch run, drop its epoch-2 checkpoint (as if killed), resume: same weights."""
    import shutil

    import torch

    from dlm_core.checkpoint import load_checkpoint
    from dlm_core.runs import RunDir
    from p06_contrastive.config import PRESETS
    from p06_contrastive.train import run_train

    src, full = tiny_run
    dst = tmp_path / "r"
    shutil.copytree(src, dst)
    (dst / "checkpoints" / "epoch-2.pt").unlink()
    resumed = run_train(PRESETS["tiny"], run_dir=dst, resume=True, preset="tiny")
    a = load_checkpoint(src / "checkpoints" / "epoch-2.pt")["model"]
    b = load_checkpoint(dst / "checkpoints" / "epoch-2.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["last"]["train_loss"] == full["last"]["train_loss"]
    assert [r["epoch"] for r in RunDir.open(dst).metrics() if "epoch" in r] == [1, 2]


def test_bm25_hard_negatives_are_the_best_other_document():
    from p06_contrastive.train import mine_hard_negatives

    docs = ["solar panel inverter monitor", "solar panel cleaning robot", "chess engine uci", "chess board gui"]
    queries = ["solar panel inverter", "solar cleaning robot", "uci chess engine", "chess gui board"]
    hard = mine_hard_negatives(queries, docs, k=2)
    assert hard.shape == (4, 2)
    assert hard[:, 0].tolist() == [1, 0, 3, 2]  # the lexically closest other document first
    assert all(i not in row for i, row in enumerate(hard.tolist()))  # never the positive
    assert mine_hard_negatives(queries[:2], docs[:2], k=3).tolist() == [[1, 1, 1], [0, 0, 0]]  # padded


def test_dense_negatives_are_the_encoders_nearest_other_documents():
    from p06_contrastive.evaluate import exact_search
    from p06_contrastive.model import embed
    from p06_contrastive.train import mine_dense_negatives

    torch.manual_seed(0)
    enc = BagEncoder(100, dim=16, max_len=8, dropout=0.0)
    docs = np.random.default_rng(0).integers(1, 100, (30, 6))
    queries = docs[:, :3].copy()  # each query is the start of its own document
    hard = mine_dense_negatives(enc, queries, docs, k=4, batch_size=7, device="cpu")
    assert hard.shape == (30, 4) and all(i not in row for i, row in enumerate(hard.tolist()))
    ids, _ = exact_search(embed(enc, queries), embed(enc, docs), k=5)
    for i in range(30):
        assert hard[i].tolist() == [j for j in ids[i] if j != i][:4]
    assert enc.training  # embed() puts the encoder back in training mode


def test_tokenizer_training_is_deterministic():
    from p06_contrastive.data import load_corpus, train_tokenizer

    ds = load_corpus(0, 1200)
    texts = [d["text"] for d in ds.docs] + [d["synopsis"] for d in ds.docs]
    assert train_tokenizer(texts, 800).to_str() == train_tokenizer(texts, 800).to_str()


def test_same_seed_same_weights(tmp_path, tiny_run):
    from p06_contrastive.config import PRESETS
    from p06_contrastive.train import run_train

    again = run_train(PRESETS["tiny"], run_dir=tmp_path / "again", preset="tiny")
    assert again["encoder_version"] == tiny_run[1]["encoder_version"]
    assert again["best_val_mrr10"] == tiny_run[1]["best_val_mrr10"]


def test_inverse_cloze_cuts_a_span_out_of_the_document():
    from p06_contrastive.data import inverse_cloze

    docs = np.zeros((3, 20), dtype=np.int64)
    docs[0, :20] = np.arange(2, 22)
    docs[1, :9] = np.arange(30, 39)
    docs[2, :5] = np.arange(50, 55)  # too short to cut: paired with itself
    q, d = inverse_cloze(docs, np.random.default_rng(0), max_query_len=8)
    assert q.shape == (3, 8) and d.shape == docs.shape
    for r in (0, 1):
        span, rest = q[r][q[r] != 0], d[r][d[r] != 0]
        n = int((docs[r] != 0).sum())
        assert 4 <= len(span) <= 8 and len(span) + len(rest) == n
        start = int(np.nonzero(docs[r] == span[0])[0][0])
        assert np.array_equal(docs[r, start:start + len(span)], span)  # a contiguous span of the document
        assert np.array_equal(np.concatenate([docs[r, :start], docs[r, start + len(span):n]]), rest)
    assert np.array_equal(q[2, :5], docs[2, :5]) and np.array_equal(d[2], docs[2])


def test_token_dropout_keeps_order_and_never_empties_a_row():
    from p06_contrastive.data import token_dropout

    ids = np.zeros((200, 30), dtype=np.int64)
    ids[:, :25] = np.arange(1, 26)
    ids[0, 1:] = 0  # a one-token row
    out = token_dropout(ids, 0.2, np.random.default_rng(0))
    kept = (out != 0).sum(1)
    assert abs(kept[1:].mean() / 25 - 0.8) < 0.03
    assert kept.min() >= 1
    for row in out[1:20]:
        v = row[row != 0]
        assert np.all(np.diff(v) > 0) and np.all(row[len(v):] == 0)  # order kept, left-aligned
    assert token_dropout(ids, 0.0, np.random.default_rng(0)) is ids


def test_weighted_pooling_learns_token_weights_and_ignores_padding():
    torch.manual_seed(0)
    enc = BagEncoder(50, dim=16, max_len=12, dropout=0.0, pool="weighted").eval()
    plain = BagEncoder(50, dim=16, max_len=12, dropout=0.0, pool="mean").eval()
    plain.load_state_dict({"tok.weight": enc.tok.weight.detach().clone()})
    ids = torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]])
    mean = torch.nn.functional.normalize(torch.stack([enc.tok.weight[[5, 6, 7]].mean(0),
                                                      enc.tok.weight[[5, 6, 7, 8, 9]].mean(0)]), dim=-1)
    assert torch.allclose(plain(ids), mean, atol=1e-6)
    assert torch.allclose(enc(ids), mean, atol=1e-6)  # zero scores = the plain mean
    with torch.no_grad():
        enc.token_weight.weight[7] = 30.0  # token 7 dominates every text it is in
    out = enc(ids)
    assert torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(out, enc(torch.tensor([[7]])).expand(2, -1), atol=1e-4)
    assert not torch.allclose(out[0], plain(ids)[0], atol=1e-2)
    assert torch.allclose(enc(torch.tensor([[5, 6, 7, 0, 0, 0, 0]])), enc(ids[:1]), atol=1e-5)
    assert enc(torch.zeros(1, 4, dtype=torch.long)).abs().max() == 0  # an all-pad row stays zero
    assert plain(torch.zeros(1, 4, dtype=torch.long)).abs().max() == 0


def test_position_scores_weight_early_tokens():
    torch.manual_seed(0)
    enc = BagEncoder(50, dim=16, max_len=12, dropout=0.0).eval()
    with torch.no_grad():
        enc.pos_score[0] = 30.0  # the first position dominates, whatever its token
    ids = torch.tensor([[9, 5, 6, 7], [3, 5, 6, 7]])
    out = enc(ids)
    assert torch.allclose(out, enc(torch.tensor([[9], [3]])), atol=1e-4)


def test_asymmetric_encoder_weighs_query_tokens_with_its_own_scores():
    torch.manual_seed(0)
    enc = BagEncoder(50, dim=16, max_len=12, dropout=0.0, asymmetric=True).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    assert torch.allclose(enc(ids), enc(ids, query=True))  # both columns start at zero
    with torch.no_grad():
        enc.token_weight.weight[7, 1] = 30.0  # token 7 dominates queries only
    assert torch.allclose(enc(ids, query=True), enc(torch.tensor([[7]])), atol=1e-4)
    assert not torch.allclose(enc(ids), enc(torch.tensor([[7]])), atol=1e-2)
    sym = BagEncoder(50, dim=16, max_len=12, dropout=0.0).eval()
    assert torch.equal(sym(ids), sym(ids, query=True))


def test_bag_training_path_equals_eval_path():
    """Training sums with one embedding_bag, eval gathers then sums: same vectors and a gradient for both."""
    torch.manual_seed(0)
    enc = BagEncoder(60, dim=8, max_len=10, dropout=0.0)
    with torch.no_grad():
        enc.token_weight.weight.normal_()
        enc.pos_score.normal_()
    ids = torch.tensor([[5, 6, 7, 7, 0, 0], [1, 2, 3, 4, 5, 9], [8, 0, 0, 0, 0, 0]])
    train_out = enc.train()(ids)
    eval_out = enc.eval()(ids)
    assert torch.allclose(train_out, eval_out, atol=1e-6)
    enc.train()(ids).sum().backward()
    assert enc.tok.weight.grad[[5, 6, 7]].abs().sum() > 0 and enc.tok.weight.grad[0].abs().sum() == 0
    assert enc.token_weight.weight.grad.abs().sum() > 0 and enc.pos_score.grad[:6].abs().sum() > 0


def test_lexical_channel_counts_shared_tokens_and_learns_its_weights():
    """--lexical-dim: unit output of dim + R; a shared rare token raises q . d through the fixed codes even when
    the learned embeddings of the two texts are orthogonal; training and eval paths agree; the codes stay fixed."""
    torch.manual_seed(0)
    enc = BagEncoder(60, dim=8, max_len=10, dropout=0.0, asymmetric=True, lexical_dim=512)
    with torch.no_grad():
        enc.tok.weight.zero_()
        enc.tok.weight[5, 0] = enc.tok.weight[6, 1] = enc.tok.weight[7, 2] = 1.0  # orthogonal embeddings
    q, d, other = torch.tensor([[5, 9]]), torch.tensor([[6, 9]]), torch.tensor([[7, 11]])
    enc.eval()
    out = enc(q, query=True)
    assert out.shape == (1, 8 + 512) and torch.allclose(out.norm(dim=-1), torch.ones(1), atol=1e-5)
    with torch.no_grad():
        shared = float(enc(q, query=True) @ enc(d).T)  # token 9 in both
        unshared = float(enc(q, query=True) @ enc(other).T)
    assert shared > 0.2 and abs(unshared) < 0.1
    ids = torch.tensor([[5, 6, 7, 7, 0], [1, 2, 3, 4, 5]])
    assert torch.allclose(enc.train()(ids, query=True), enc.eval()(ids, query=True), atol=1e-6)
    enc.train()(ids).sum().backward()
    assert enc.token_weight.weight.grad[:, 2].abs().sum() > 0  # the lexical document column is learned
    assert enc.lex_gain.grad is not None and not enc.lex_codes.requires_grad
