"""The hand-written LSTM equals nn.LSTM (outputs, final state and every gradient) for the same weights."""

import torch
from torch import nn

from p04_rnn.model import CharRNN, HandLSTM, count_params, hidden_for_params, params_for


def test_hand_lstm_matches_nn_lstm_outputs_and_gradients():
    torch.manual_seed(0)
    ref = nn.LSTM(5, 7, num_layers=2, batch_first=True).double()
    hand = HandLSTM(5, 7, num_layers=2).double()
    hand.load_state_dict(ref.state_dict())            # same names, same layout (gates i, f, g, o)
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    h0 = torch.randn(2, 3, 7, dtype=torch.float64)
    c0 = torch.randn(2, 3, 7, dtype=torch.float64)
    inputs = [t.clone().requires_grad_(True) for t in (x, h0, c0)]
    inputs_ref = [t.clone().requires_grad_(True) for t in (x, h0, c0)]
    out, (h, c) = hand(inputs[0], (inputs[1], inputs[2]))
    out_r, (h_r, c_r) = ref(inputs_ref[0], (inputs_ref[1], inputs_ref[2]))
    torch.testing.assert_close(out, out_r)
    torch.testing.assert_close(h, h_r)
    torch.testing.assert_close(c, c_r)
    w = torch.randn_like(out)                          # a random scalar function of every output
    ((out * w).sum() + h.sum() * 0.3 + (c ** 2).sum()).backward()
    ((out_r * w).sum() + h_r.sum() * 0.3 + (c_r ** 2).sum()).backward()
    for a, b in zip(inputs, inputs_ref):
        torch.testing.assert_close(a.grad, b.grad)
    ref_params = dict(ref.named_parameters())
    for name, p in hand.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad, msg=name)


def test_hand_cell_in_the_full_model_gives_the_same_logits():
    torch.manual_seed(1)
    a, b = CharRNN(20, "lstm", 6, 9, 2), CharRNN(20, "hand-lstm", 6, 9, 2)
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 20, (2, 11))
    torch.testing.assert_close(a.eval()(x)[0], b.eval()(x)[0], atol=1e-5, rtol=1e-5)


def test_parameter_count_formula_and_matching():
    for cell in ("lstm", "gru", "rnn"):
        assert count_params(CharRNN(73, cell, 32, 50, 2)) == params_for(cell, 73, 32, 50, 2)
    target = params_for("lstm", 73, 32, 192, 1)
    for cell in ("gru", "rnn"):
        h = hidden_for_params(cell, target, 73, 32, 1)
        assert abs(params_for(cell, 73, 32, h, 1) - target) / target < 0.01
