"""The models: a small ResNet (conv-BN-ReLU, residual blocks, global average pooling) and a plain CNN.

Both map (N, 1, 28, 28) float images to (N, classes) logits and describe their layers as
(name, kernel, stride) so that `receptive_field` can say how many input pixels each layer sees.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a skip connection (1x1 conv on the skip when the shape changes), as in ResNet-18."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.skip(x))


class ResNetSmall(nn.Module):
    """stem conv -> BasicBlocks in three stages (widths w, 2w, 4w or last_width; stride 2 between stages) ->
    GAP -> linear. A wider last stage is cheap: it runs on 7x7 maps (a third of the first stage's pixels / 16)."""

    def __init__(self, classes: int = 10, width: int = 32, blocks: int = 1, dropout: float = 0.0,
                 last_width: int = 0):
        super().__init__()
        self.stem = conv_bn(1, width)
        stages, c_in, self.layout = [], width, [("stem", 3, 1)]
        for i, c_out in enumerate((width, 2 * width, last_width or 4 * width)):
            for j in range(blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                stages.append(BasicBlock(c_in, c_out, stride))
                name = f"stage{i + 1}.block{j + 1}"
                self.layout += [(f"{name}.conv1", 3, stride), (f"{name}.conv2", 3, 1)]
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer: pooled features before the linear classifier (what drift monitoring watches)."""
        return self.head[:-1](self.stages(self.stem(x)))

    def first_conv(self) -> nn.Conv2d:
        return self.stem[0]


class PlainCNN(nn.Module):
    """The comparison model: [conv-BN-ReLU x2, max-pool] x 2 -> conv -> GAP -> linear, no skips."""

    def __init__(self, classes: int = 10, width: int = 32, dropout: float = 0.0):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn(1, w), conv_bn(w, w), nn.MaxPool2d(2),
            conv_bn(w, 2 * w), conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
            conv_bn(2 * w, 4 * w))
        self.layout = [("conv1", 3, 1), ("conv2", 3, 1), ("pool1", 2, 2), ("conv3", 3, 1), ("conv4", 3, 1),
                       ("pool2", 2, 2), ("conv5", 3, 1)]
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * w, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head[:-1](self.features(x))

    def first_conv(self) -> nn.Conv2d:
        return self.features[0][0]


class FlipTTA(nn.Module):
    """Test-time flip averaging: the embedding is the mean of the image's and its mirror image's embeddings, so
    (the head being one linear layer) the logits are the mean of the two views' logits. Fashion-MNIST's classes
    are left-right symmetric and training flips them, so the mirror image is a second honest look."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.layout = model.layout

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model.embed(x) + self.model.embed(torch.flip(x, dims=[3]))) / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.head[-1](self.embed(x))

    @property
    def head(self) -> nn.Module:
        return self.model.head

    def first_conv(self) -> nn.Conv2d:
        return self.model.first_conv()


def with_tta(model: nn.Module, flip: bool) -> nn.Module:
    """The model as evaluated and served: wrapped in FlipTTA when flip is on."""
    return FlipTTA(model) if flip else model


def build_model(arch: str, classes: int = 10, width: int = 32, blocks: int = 1, dropout: float = 0.0,
                last_width: int = 0) -> nn.Module:
    if arch == "resnet":
        return ResNetSmall(classes, width, blocks, dropout, last_width)
    if arch == "plain":
        return PlainCNN(classes, width, dropout)
    raise ValueError(f"unknown arch {arch!r}")


def model_for(cfg, classes: int = 10) -> nn.Module:
    """The network a run's config (a CNNConfig) describes."""
    return build_model(cfg.arch, classes, cfg.width, cfg.blocks, cfg.dropout, cfg.last_width)


def receptive_field(layout: list[tuple[str, int, int]]) -> list[dict]:
    """Receptive field (input pixels per side) after each layer: r += (k - 1) * jump; jump *= stride.

    For a residual block the conv path is the longest path, so its field is the block's field.
    """
    rows, r, jump = [], 1, 1
    for name, k, s in layout:
        r += (k - 1) * jump
        jump *= s
        rows.append({"layer": name, "kernel": k, "stride": s, "jump": jump, "rf": r})
    return rows


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
