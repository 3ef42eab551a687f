"""Cheap per-frame features for the samplers: ``x [B, T, C, H, W]`` -> ``F [B, T, d]``.

Fixed (the DAS paper's, SPEC 1.1), ``d = 5``, in this order:

0. variance of the frame over channels and pixels (temporal activity);
1. mean absolute difference to the previous frame (frame 0 repeats frame 1's value);
2. mean Sobel gradient magnitude ``sqrt(gx^2 + gy^2)`` (anatomical boundaries);
3. mean absolute Laplacian (fine edges);
4. mean intensity.

The three edge kernels run as one ``conv2d`` over all ``B*T`` frames at once, on the channel mean of
each frame (grey images here; a colour frame is reduced to its luminance-like mean), over interior
pixels (frames smaller than 3x3 are replicate-padded first). They are fixed functions of the data:
computed in float32 outside autocast (variances of [0, 1] images lose most of their digits in
bfloat16) and without gradient.

Learned (the paper's future work): a tiny CNN per frame on the channel mean (so it needs no
``in_channels``), two stride-2 3x3 convolutions and a global average, ``d = 8`` by default.

Both are standardised over T within each input (``(F - mean_T) / (std_T + eps)``), so a sampler sees
which frames stand out in *this* input, not absolute levels; the raw values stay available for
summaries where absolute levels matter (see :class:`FrameFeatures`). The optional normalised
position ``t / (T - 1)`` is appended after standardisation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from das.samplers.base import check_bool, check_choice, check_positive_int

FEATURE_KINDS = ("fixed", "learned")
FIXED_FEATURES = ("variance", "temporal_difference", "sobel", "laplacian", "intensity")
_EPS = 1e-5


def edge_kernels() -> Tensor:
    """Sobel x, Sobel y and the 4-neighbour Laplacian as the three output channels of one conv: ``[3, 1, 3, 3]``."""
    return torch.tensor(
        [
            [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],
            [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]],
            [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
        ]
    ).unsqueeze(1)


def frame_variance(x: Tensor) -> Tensor:
    """Variance of each frame over channels and pixels: ``[B, T, C, H, W]`` -> ``[B, T]`` float32."""
    with torch.autocast(x.device.type, enabled=False):
        x = x.detach().float()
        # E[x^2] - E[x]^2: two plain reductions, ~15x faster on CPU than torch.var's Welford pass.
        variance = x.square().mean(dim=(2, 3, 4)) - x.mean(dim=(2, 3, 4)).square()
        return variance.clamp_min(0.0)


def fixed_features(x: Tensor, kernels: Tensor) -> Tensor:
    """The five fixed features, unstandardised: ``[B, T, C, H, W]`` -> ``[B, T, 5]`` float32.

    ``kernels``: :func:`edge_kernels` already on ``x``'s device (a module buffer, so that no
    host-to-device copy happens per call).
    """
    batch, frames = x.shape[:2]
    with torch.autocast(x.device.type, enabled=False):
        variance = frame_variance(x)
        x = x.detach().float()
        difference = (x[:, 1:] - x[:, :-1]).abs().mean(dim=(2, 3, 4))
        # Frame 0 has no predecessor: give it frame 1's value (zero when T == 1).
        difference = torch.cat([difference[:, :1], difference], dim=1) if frames > 1 else torch.zeros_like(variance)
        grey = x.mean(dim=2).reshape(batch * frames, 1, *x.shape[3:])
        # Interior pixels only (no padding: cheaper, no artificial edges); pad frames under 3x3.
        if min(grey.shape[-2:]) < 3:
            grey = nn.functional.pad(grey, (1, 1, 1, 1), mode="replicate")
        edges = nn.functional.conv2d(grey, kernels)
        sobel = edges[:, :2].square().sum(dim=1).sqrt().mean(dim=(1, 2)).view(batch, frames)
        laplacian = edges[:, 2].abs().mean(dim=(1, 2)).view(batch, frames)
        intensity = x.mean(dim=(2, 3, 4))
    return torch.stack([variance, difference, sobel, laplacian, intensity], dim=-1)


def standardise_over_frames(features: Tensor) -> Tensor:
    """``(F - mean_T F) / (std_T F + eps)`` per input and feature; constant features become 0."""
    mean = features.mean(dim=1, keepdim=True)
    std = features.std(dim=1, keepdim=True, unbiased=False)
    return (features - mean) / (std + _EPS)


class LearnedFrameFeatures(nn.Module):
    """A tiny per-frame CNN: channel mean ``[N, 1, H, W]`` -> ``[N, d]`` (two stride-2 convs, ReLU, mean)."""

    def __init__(self, out_features: int = 8, width: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, out_features, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x: Tensor) -> Tensor:
        batch, frames = x.shape[:2]
        grey = x.mean(dim=2).reshape(batch * frames, 1, *x.shape[3:])
        return self.net(grey).view(batch, frames, -1).float()


class FrameFeatures(nn.Module):
    """Per-frame features of a batch: ``x [B, T, C, H, W]`` -> ``(F [B, T, d], raw [B, T, d0])``.

    ``F`` is standardised over T (plus the position column when ``position``); ``raw`` holds the same
    features before standardisation and without position, for pooled per-input summaries.

    kind: ``"fixed"`` (5 features, no parameters) or ``"learned"`` (the tiny CNN, ``learned_dim``
    features).
    """

    def __init__(self, kind: str = "fixed", position: bool = False, learned_dim: int = 8) -> None:
        super().__init__()
        self.kind = check_choice("features", kind, FEATURE_KINDS)
        self.position = check_bool("position", position)
        check_positive_int("learned_dim", learned_dim)
        self.cnn = LearnedFrameFeatures(learned_dim) if kind == "learned" else None
        self.raw_dim = learned_dim if kind == "learned" else len(FIXED_FEATURES)
        self.out_dim = self.raw_dim + int(position)
        self.register_buffer("edge_kernels", edge_kernels(), persistent=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raw = fixed_features(x, self.edge_kernels) if self.cnn is None else self.cnn(x)
        features = standardise_over_frames(raw)
        if self.position:
            frames = x.shape[1]
            where = torch.linspace(0.0, 1.0, frames, device=x.device) if frames > 1 else torch.zeros(1, device=x.device)
            features = torch.cat([features, where.expand(x.shape[0], -1).unsqueeze(-1)], dim=-1)
        return features, raw

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, position={self.position}, out_dim={self.out_dim}"
