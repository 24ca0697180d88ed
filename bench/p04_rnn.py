"""p04_rnn bench: training tokens/s of the hand-written LSTM cell vs nn.LSTM (same sizes, same weights),
and generation characters/s. Runs are interleaved and medians reported; one torch thread (the fastest
setting on the shared 2-core machine). Prints one JSON object and writes bench/results/p04_rnn.json.
"""

from __future__ import annotations

import torch

from dlm_core.benchmark import interleaved_medians, machine, unshadow, write_result

unshadow(__file__, "p04_rnn")

from p04_rnn.data import Vocab  # noqa: E402
from p04_rnn.generate import generate  # noqa: E402
from p04_rnn.model import CharRNN  # noqa: E402

VOCAB, EMBED, HIDDEN, LAYERS, BATCH, SEQ = 73, 64, 256, 2, 32, 100
REPS, STEPS, GEN_CHARS = 5, 3, 200


def train_steps(model, opt, x, steps: int) -> None:
    """`steps` optimizer steps (forward, backward, clip, AdamW) on one (BATCH, SEQ) window."""
    for _ in range(steps):
        logits, _ = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()


def main() -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    peer = CharRNN(VOCAB, "lstm", EMBED, HIDDEN, LAYERS)
    ours = CharRNN(VOCAB, "hand-lstm", EMBED, HIDDEN, LAYERS)
    ours.load_state_dict(peer.state_dict())
    opts = {m: torch.optim.AdamW(m.parameters(), lr=1e-3) for m in (peer, ours)}
    x = torch.randint(0, VOCAB, (BATCH, SEQ + 1))
    med = interleaved_medians({name: (lambda m=m: train_steps(m, opts[m], x, STEPS))
                               for name, m in (("peer", peer), ("ours", ours))}, rounds=REPS, warmup=1)
    tok = {k: BATCH * SEQ * STEPS / v for k, v in med.items()}

    vocab = Vocab([chr(32 + i) for i in range(VOCAB)])
    gen_s = interleaved_medians({name: (lambda m=m: generate(m, vocab, "ABC", GEN_CHARS, temperature=0.8, top_k=20,
                                                             seed=0))
                                 for name, m in (("nn_lstm", peer), ("hand_lstm", ours))}, rounds=3, warmup=0)
    result = {
        "bench": f"char LM training step, {LAYERS}x{HIDDEN} LSTM, embed {EMBED}, batch {BATCH} x seq {SEQ}, "
                 f"forward+backward+clip+AdamW; hand-written cell (ours) vs nn.LSTM (peer), same weights",
        "machine": machine(),
        "ours": {"train_tokens_per_s": round(tok["ours"], 1)},
        "peer": {"train_tokens_per_s": round(tok["peer"], 1)},
        "ratio": round(tok["ours"] / tok["peer"], 4),
        "goal": "training tokens/s, higher is better; ratio = hand cell / nn.LSTM (the hand cell is for teaching: "
                "a Python loop over time steps, expected slower than the fused kernel)",
        "generation_chars_per_s": {k: round(GEN_CHARS / v, 1) for k, v in gen_s.items()},
        "generation": f"{GEN_CHARS} chars, batch 1, temperature 0.8, top-k 20, untrained weights of the same size",
        "reps": REPS, "steps_per_rep": STEPS,
    }
    write_result("p04_rnn", result)
    return result


if __name__ == "__main__":
    main()
