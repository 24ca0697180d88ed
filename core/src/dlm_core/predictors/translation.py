"""The translator: encoder graph once per sentence, then the one-step decoder graph with a key/value cache
(layers, batch, heads, past, d_k) that starts empty and grows by one position per token.

Greedy decoding runs the whole batch together; beam search (GNMT length normalisation, fairseq's EOS rule,
no-repeat-n-gram blocking) runs one sentence at a time with its beams as the batch: the same algorithm as
p05_transformer.decode.beam_search, in numpy.
"""

from __future__ import annotations

import numpy as np

from .base import BatchOutput, v2_spec
from .text import TextPredictor, as_text


def repeated_ngram_tokens(prefix: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram already present in `prefix`."""
    if n < 1 or len(prefix) < n - 1:
        return []
    tail = tuple(prefix[len(prefix) - n + 1:]) if n > 1 else ()
    return [prefix[i + n - 1] for i in range(len(prefix) - n + 1) if tuple(prefix[i:i + n - 1]) == tail]


class Translator(TextPredictor):
    task = "translation"
    prediction_kind = "length"

    def __init__(self, bundle, threads: int = 1):
        super().__init__(bundle, threads)
        c = self.post["cache"]
        self.cache_shape = (c["layers"], c["heads"], c["d_k"])

    def prepare(self, item):
        return self.tokenize(as_text(item))

    # -- the two graphs
    def encode(self, src: np.ndarray) -> dict[str, np.ndarray]:
        return self.run_graph(self.post["encoder_graph"], {self.pre["graph_input"]: src})

    def empty_cache(self, n: int) -> np.ndarray:
        layers, heads, d_k = self.cache_shape
        return np.zeros((layers, n, heads, 0, d_k), np.float32)

    def step(self, token: np.ndarray, k, v, enc: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self.run_graph(self.post["step_graph"], {"token": token, "self_k": k, "self_v": v,
                                                       "cross_k": enc["cross_k"], "cross_v": enc["cross_v"],
                                                       "src_keep": enc["src_keep"]})
        return out["logp"], out["new_k"], out["new_v"]

    def strip(self, ids) -> list[int]:
        out = []
        for t in ids:
            if t in (self.post["eos_id"], self.post["pad_id"]):
                break
            out.append(int(t))
        return out

    # -- decoding
    def greedy(self, src: np.ndarray) -> list[list[int]]:
        enc = self.encode(src)
        n = len(src)
        k = v = self.empty_cache(n)
        prefix = np.full((n, 1), self.post["bos_id"], np.int64)
        done = np.zeros(n, bool)
        for _ in range(self.post["max_output_tokens"]):
            logp, k, v = self.step(prefix[:, -1:], k, v, enc)
            nxt = np.where(done, self.post["pad_id"], logp.argmax(-1))
            prefix = np.concatenate([prefix, nxt[:, None]], 1)
            done |= nxt == self.post["eos_id"]
            if done.all():
                break
        return [self.strip(row) for row in prefix[:, 1:].tolist()]

    def beam_search(self, src: np.ndarray) -> list[int]:
        """One sentence (src (1, S)); returns the best finished hypothesis by log p / ((5 + len) / 6) ** alpha."""
        beam, alpha, eos = self.post["beam"], self.post["length_alpha"], self.post["eos_id"]
        block, max_len = self.post["no_repeat_ngram"], self.post["max_output_tokens"]
        enc1 = self.encode(src)
        by_width: dict[int, dict] = {1: enc1}

        def expanded(n: int) -> dict:  # the source's keys/values repeated for n beams
            if n not in by_width:
                by_width[n] = {"cross_k": np.repeat(enc1["cross_k"], n, 1), "cross_v": np.repeat(enc1["cross_v"], n, 1),
                               "src_keep": np.repeat(enc1["src_keep"], n, 0)}
            return by_width[n]

        enc = enc1
        k = v = self.empty_cache(1)
        prefix = np.full((1, 1), self.post["bos_id"], np.int64)
        scores = np.zeros(1, np.float32)
        finished: list[tuple[float, list[int]]] = []

        def norm(logp: float, length: int) -> float:
            return logp / (((5 + length) / 6) ** alpha)

        for t in range(max_len):
            logp, k, v = self.step(prefix[:, -1:], k, v, enc)
            if block:
                for row, hyp in enumerate(prefix[:, 1:].tolist()):
                    banned = repeated_ngram_tokens(hyp, block)
                    if banned:
                        logp[row, banned] = -np.inf
            total = (scores[:, None] + logp).reshape(-1)
            n_top = min(2 * beam, total.size)
            idx = np.argpartition(-total, n_top - 1)[:n_top]
            idx = idx[np.lexsort((idx, -total[idx]))]  # by score, ties by index (as torch.topk on CPU)
            parents, tokens = idx // logp.shape[1], idx % logp.shape[1]
            keep_parent, keep_tok, keep_score = [], [], []
            for rank, (p, tok) in enumerate(zip(parents.tolist(), tokens.tolist())):
                s = float(total[p * logp.shape[1] + tok])
                if tok == eos:
                    if rank < beam:  # fairseq's rule: an EOS counts only among the top `beam` candidates
                        finished.append((norm(s, t + 1), prefix[p, 1:].tolist()))
                elif len(keep_parent) < beam:
                    keep_parent.append(p)
                    keep_tok.append(tok)
                    keep_score.append(s)
            if len(finished) >= beam or not keep_parent:
                break
            index = np.asarray(keep_parent)
            k, v = k[:, index], v[:, index]
            enc = expanded(len(index))
            prefix = np.concatenate([prefix[index], np.asarray(keep_tok, np.int64)[:, None]], 1)
            scores = np.asarray(keep_score, np.float32)
        if not finished:  # ran out of length: the best open beam
            finished = [(norm(float(s), max_len), prefix[i, 1:].tolist()) for i, s in enumerate(scores)]
        return self.strip(max(finished, key=lambda f: f[0])[1])

    def translate_ids(self, srcs: list[np.ndarray]) -> list[list[int]]:
        if self.post["beam"] > 1:
            return [self.beam_search(s[None]) for s in srcs]
        return self.greedy(self.pad(srcs))

    def run(self, rows) -> BatchOutput:
        srcs = [r[0] for r in rows]
        outs = self.translate_ids(srcs)
        texts = [self.tokenizer.decode(o, skip_special_tokens=True).strip() for o in outs]
        results = [{"prediction": t, "translation": t, "source_lang": self.post["source_lang"],
                    "target_lang": self.post["target_lang"], "output_tokens": len(o)} for t, o in zip(texts, outs)]
        # embedding: the last encoder layer's cross-attention keys averaged over the real source tokens
        src = self.pad(srcs)
        enc = self.encode(src)
        keep = enc["src_keep"].reshape(len(src), -1).astype(np.float32)  # (n, S)
        ck = enc["cross_k"][-1]  # (n, heads, S, d_k)
        pooled = (ck * keep[:, None, :, None]).sum(2) / keep.sum(1)[:, None, None]
        tensors = {"translation": np.array(texts, object),
                   "output_tokens": np.array([len(o) for o in outs], np.int64)}
        return BatchOutput(results, tensors, np.stack([r[1] for r in rows]),
                           np.array([len(o) for o in outs], np.float32), pooled.reshape(len(src), -1))

    def rows_from_v2(self, inputs):
        return self.text_rows_from_v2(inputs)

    def v2_inputs(self):
        return [v2_spec("text", "object", [-1])]

    def v2_outputs(self):
        return [v2_spec("translation", "object", [-1]), v2_spec("output_tokens", "int64", [-1])]

    def example_input(self):
        return "In the beginning God created the heavens and the earth."
