"""ONNX export: ONNX Runtime greedy decoding (encoder + one cached decoder step) == torch greedy decoding."""

import numpy as np
import torch

from p05_transformer import data as D
from p05_transformer.decode import greedy
from p05_transformer.export import OrtTranslator, export_onnx


def test_onnx_greedy_equals_torch_greedy(overfit, tmp_path):
    model, _, ids = overfit
    export_onnx(model, tmp_path)
    a = model.decoder[0].self_attn
    ort = OrtTranslator(tmp_path, 41, len(model.decoder), a.heads, a.d_k)
    src = D.pad([s for s, _ in ids[:6]])  # a padded batch of different lengths
    assert ort.greedy(src) == greedy(model, torch.from_numpy(src), 41) == [t[1:-1] for _, t in ids[:6]]
    one = np.asarray([ids[7][0]])  # batch of one, other length
    assert ort.greedy(one) == greedy(model, torch.from_numpy(one), 41)
