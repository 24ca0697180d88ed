"""The batched augmentation draws from the same distribution as torchvision's per-image v2 transforms."""

import numpy as np
import torch
from torchvision.transforms import v2

from p03_cnn.data import MEAN, STD, BatchAugment

N = 4000
FILL = -MEAN / STD


def marker_batch(row: int, col: int) -> torch.Tensor:
    x = torch.zeros(N, 1, 28, 28)
    x[:, 0, row, col] = 5.0
    return x


def positions(out: torch.Tensor) -> np.ndarray:
    """Where the marker pixel landed, as row * 28 + col (-1 when cropped out)."""
    flat = out.reshape(len(out), -1)
    pos = flat.argmax(1)
    return torch.where(flat.max(1).values == 5.0, pos, -1).numpy()


def test_crop_offsets_match_torchvision():
    torch.manual_seed(0)
    ours = positions(BatchAugment(padding=2).crop(marker_batch(14, 14)))
    ref_t = v2.RandomCrop(28, padding=2, fill=FILL)
    ref = positions(torch.stack([ref_t(x) for x in marker_batch(14, 14)]))
    cells = sorted(set(ref))
    assert len(cells) == 25 and set(ours) == set(cells)  # every shift of -2..2 in both axes, nothing else
    counts = np.array([[np.sum(ours == c), np.sum(ref == c)] for c in cells])
    assert np.abs(counts - N / 25).max() < 60  # uniform over the 25 shifts (binomial sd ~12)


def test_crop_pads_with_black():
    torch.manual_seed(1)
    out = BatchAugment(padding=2).crop(torch.full((N, 1, 28, 28), 3.0))
    padded_share = (out == FILL).float().mean().item()
    # each axis keeps 28 - |shift| real rows; E|shift| over -2..2 is 1.2 -> 1 - (26.8 / 28)^2 of a frame is padding
    assert abs(padded_share - (1 - (26.8 / 28) ** 2)) < 0.005
    assert torch.equal(torch.unique(out), torch.tensor([FILL, 3.0]))


def test_flip_half_the_time():
    torch.manual_seed(2)
    pos = positions(BatchAugment.flip(marker_batch(0, 3)))
    assert set(pos) == {3, 24} and abs(np.mean(pos == 24) - 0.5) < 0.03


def test_erasing_matches_torchvision():
    torch.manual_seed(3)
    ones = torch.ones(N, 1, 28, 28)
    ours = BatchAugment(padding=2, erasing_p=0.25).erase(ones)
    ref_t = v2.RandomErasing(p=0.25, scale=(0.02, 0.15), value=FILL)
    ref = torch.stack([ref_t(x) for x in ones])
    stats = []
    for out in (ours, ref):
        erased = (out == FILL).flatten(1)
        area = erased.sum(1).float()
        hit = area > 0
        rows, cols = erased.view(N, 28, 28).any(2).sum(1), erased.view(N, 28, 28).any(1).sum(1)
        assert torch.equal((rows * cols)[hit], area[hit].long())  # each erased patch is one rectangle
        stats.append((hit.float().mean().item(), area[hit].mean().item(), rows[hit].float().mean().item()))
    (share, mean_area, mean_h), (ref_share, ref_area, ref_h) = stats
    assert abs(share - 0.25) < 0.03 and abs(ref_share - 0.25) < 0.03
    assert abs(mean_area - ref_area) / ref_area < 0.08 and abs(mean_h - ref_h) / ref_h < 0.08


def test_augment_keeps_shape_dtype_and_draws_per_image():
    torch.manual_seed(4)
    x = torch.randn(64, 1, 28, 28)
    out = BatchAugment()(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not all(torch.equal(out[0] - x[0], out[i] - x[i]) for i in range(1, 64))  # not one draw for all
