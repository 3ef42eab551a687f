"""Cheap per-frame features for the samplers: ``x [B, T, C, H, W]`` -> ``F [B, T, d]``.

Fixed (the paper's, plus two of ours), ``d = 5``, in this order:

0. variance of the frame over channels and pixels (temporal activity);
1. mean absolute difference to the previous frame (frame 0 repeats frame 1's value);
2. mean Sobel gradient magnitude ``sqrt(gx^2 + gy^2)`` (anatomical boundaries);
3. mean absolute Laplacian (fine edges);
4. mean intensity.

The edge filters (:func:`edge_kernels`, as ``conv2d`` computes them) act on the channel mean of each
frame over its interior pixels (frames under 3x3 are replicate-padded first), as shifted slices of
all ``B*T`` frames at once (Sobel in its separable form): the values of ``conv2d`` up to float32
rounding, with fewer passes over memory. The features are fixed functions of the data, computed in
float32 outside autocast (variances of [0, 1] images lose most of their digits in bfloat16) and
without gradient.

Cost accounting: ``FlopCounterMode`` counts only matrix products and convolutions, so the features
run as one custom operator, ``torch.ops.das.fixed_features``, whose FLOP formula
(:func:`fixed_features_flops`) counts every add, multiply, absolute value and square root of the
implementation. The sampler's elementwise work is counted although the backbone's is not, so its
share is, if anything, overstated. The operator is opaque to ``torch.compile``.

Compiled (:mod:`das.samplers.fused`): DAS's evaluation compiles the same code
(:func:`raw_fixed_features`) with its base score and top-k into a kernel or two, by default;
``fused=True`` here compiles the features alone, in training too. The compute chapter measures both.

Learned (the paper's future work): a tiny CNN per frame on the channel mean, two stride-2 3x3
convolutions and a global average, ``d = 8`` by default.

Both are standardised over T within each input, ``(F - mean_T) / (std_T + eps)``, so a sampler sees
which frames stand out in *this* input; the raw values stay available for summaries where absolute
levels matter (:class:`FrameFeatures`). The optional position ``t / (T - 1)`` is appended after.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import register_flop_formula

from das.checks import check_bool, check_choice, check_int
from das.samplers.base import check_statistics

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


def _moments(flat: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance over the last dim of float32 ``flat``, as ``E[x^2] - E[x]^2``: two plain
    reductions (the squares are never stored), ~15x faster on CPU than torch.var's Welford pass."""
    mean = flat.mean(dim=-1)
    second = torch.linalg.vector_norm(flat, dim=-1).square() / flat.shape[-1]
    return mean, (second - mean.square()).clamp_min(0.0)


def frame_variance(x: Tensor) -> Tensor:
    """Variance of each frame over channels and pixels: ``[B, T, C, H, W]`` -> ``[B, T]`` float32."""
    with torch.autocast(x.device.type, enabled=False):
        return _moments(x.detach().float().flatten(2))[1]


def _edge_means(grey: Tensor) -> tuple[Tensor, Tensor]:
    """Mean Sobel magnitude and mean absolute Laplacian of each frame ``[N, H, W]`` (H, W >= 3) over
    its interior pixels: the cross-correlations with :func:`edge_kernels`, written as shifted slices."""
    centre = grey[:, 1:-1, 1:-1]
    dx = grey[:, :, 2:] - grey[:, :, :-2]  # central difference along W, every row
    gx = dx[:, :-2] + dx[:, 2:]
    gx.add_(dx[:, 1:-1], alpha=2.0)  # [1, 2, 1] smoothing along H: Sobel x
    dy = grey[:, 2:] - grey[:, :-2]  # central difference along H, every column
    gy = dy[..., :-2] + dy[..., 2:]
    gy.add_(dy[..., 1:-1], alpha=2.0)  # Sobel y
    laplacian = grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1]
    laplacian.add_(grey[:, 1:-1, :-2]).add_(grey[:, 1:-1, 2:]).sub_(centre, alpha=4.0)
    interior = centre.shape[1] * centre.shape[2]
    # sqrt(gx^2 + gy^2) in three in-place passes (torch.hypot is ~2x slower on CPU).
    sobel = gx.square_().addcmul_(gy, gy).sqrt_().sum(dim=(1, 2)) / interior
    return sobel, torch.linalg.vector_norm(laplacian, ord=1, dim=(1, 2)) / interior


def _features(x: Tensor) -> Tensor:
    """The five features of float32 ``x [B, T, C, H, W]`` (no autocast, no gradient): ``[B, T, 5]``."""
    batch, frames = x.shape[:2]
    flat = x.reshape(batch, frames, -1)
    intensity, variance = _moments(flat)
    if frames > 1:
        difference = torch.linalg.vector_norm(flat[:, 1:] - flat[:, :-1], ord=1, dim=-1) / flat.shape[-1]
        # Frame 0 has no predecessor: give it frame 1's value (zero when T == 1).
        difference = torch.cat([difference[:, :1], difference], dim=1)
    else:
        difference = torch.zeros_like(variance)
    grey = x[:, :, 0] if x.shape[2] == 1 else x.mean(dim=2)
    grey = grey.reshape(batch * frames, *x.shape[3:])
    # Interior pixels only (no padding: cheaper, no artificial edges); pad frames under 3x3.
    if min(grey.shape[-2:]) < 3:
        grey = nn.functional.pad(grey.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
    sobel, laplacian = _edge_means(grey)
    edges = [sobel.view(batch, frames), laplacian.view(batch, frames)]
    return torch.stack([variance, difference, *edges, intensity], dim=-1)


@functools.cache
def _compiled_features() -> Callable[[Tensor], Tensor]:
    """:func:`_features` compiled by ``torch.compile`` into fused kernels (built on first use)."""
    # Compiling on a machine without CUDA makes torch log a CUDA_HOME warning on stderr: noise here.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    return torch.compile(_features, dynamic=False)


def _fused_features(x: Tensor) -> Tensor:
    # The batch size stays symbolic, so one compilation serves every batch of a frame shape; T, C, H
    # and W stay specialised (about 1.8x faster kernels on CPU at 28^3 than all-dynamic shapes).
    torch._dynamo.maybe_mark_dynamic(x, 0)
    return _compiled_features()(x)


@torch.library.custom_op("das::fixed_features", mutates_args=())
def _fixed_features_op(x: Tensor, fused: bool) -> Tensor:
    """:func:`_features`, eager or (``fused``) compiled; one operator so ``FlopCounterMode`` counts it."""
    return _fused_features(x) if fused else _features(x)


@_fixed_features_op.register_fake
def _(x: Tensor, fused: bool) -> Tensor:
    return x.new_empty(x.shape[0], x.shape[1], len(FIXED_FEATURES))


@register_flop_formula(torch.ops.das.fixed_features)
def fixed_features_flops(x_shape: torch.Size, *_: object, out_shape: object = None, **__: object) -> int:
    """FLOPs of :func:`fixed_features` on ``[B, T, C, H, W]``, each elementwise add, multiply,
    absolute value or square root counted as one (what ``FlopCounterMode`` reports for the operator).

    Per value of ``x`` (``T*C*H*W`` values per input): 1 for the mean, 2 for the sum of squares, 3 for
    the difference to the previous frame (subtract, absolute value, sum; ``T - 1`` frames); per pixel
    of the grey frame, ``C - 1`` adds for the channel mean when ``C > 1``; per grey frame of
    ``H x W`` (padded to 3x3 when smaller), 1 subtraction per pixel of ``H x (W - 2)`` and of
    ``(H - 2) x W`` for the two central differences, and per interior pixel 3 + 3 for the two
    smoothings, 5 for the magnitude (2 squares, 1 add, 1 root, 1 sum), 5 + 2 for the Laplacian and its
    absolute sum: 18. About 23 per pixel of a 28^3 grey volume.
    """
    batch, frames, channels, height, width = x_shape
    values = channels * height * width
    flops = batch * frames * 3 * values + batch * (frames - 1) * 3 * values
    if channels > 1:
        flops += batch * frames * channels * height * width
    if min(height, width) < 3:
        height, width = height + 2, width + 2
    flops += batch * frames * (height * (width - 2) + (height - 2) * width + 18 * (height - 2) * (width - 2))
    return flops


def raw_fixed_features(x: Tensor) -> Tensor:
    """The five fixed features of ``x [B, T, C, H, W]`` (any floating dtype, read without gradient), in
    float32 outside autocast, as plain tensor code: what :func:`fixed_features` runs inside its
    operator, for callers that compile it into a larger function (:mod:`das.samplers.fused`)."""
    with torch.autocast(x.device.type, enabled=False):
        return _features(x.detach().float())


def fixed_features(x: Tensor, fused: bool = False) -> Tensor:
    """The five fixed features, unstandardised: ``[B, T, C, H, W]`` -> ``[B, T, 5]`` float32.

    ``fused``: run them as kernels fused by ``torch.compile`` (one or two passes over the volume
    instead of about fifteen; see the module docstring). Same values up to float32 rounding.
    """
    with torch.autocast(x.device.type, enabled=False):
        return _fixed_features_op(x.detach().float().contiguous(), check_bool("fused", fused))


def standardise_over_frames(features: Tensor) -> Tensor:
    """``(F - mean_T F) / (std_T F + eps)`` per input and feature; constant features become 0."""
    mean = features.mean(dim=1, keepdim=True)
    std = features.std(dim=1, keepdim=True, unbiased=False)
    return (features - mean) / (std + _EPS)


def append_position(features: Tensor) -> Tensor:
    """``[B, T, d]`` -> ``[B, T, d + 1]``: each frame's normalised position ``t / (T - 1)`` (0 when T = 1)."""
    batch, frames = features.shape[:2]
    where = (
        torch.linspace(0.0, 1.0, frames, device=features.device)
        if frames > 1
        else torch.zeros(1, device=features.device)
    )
    return torch.cat([features, where.expand(batch, -1).unsqueeze(-1)], dim=-1)


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
        # Input of any floating dtype runs in the CNN's own (float32 unless the module was cast), as
        # the fixed features do; a no-op for float32 input. Autocast still applies to the convs.
        grey = x.to(self.net[0].weight.dtype).mean(dim=2).reshape(batch * frames, 1, *x.shape[3:])
        return self.net(grey).view(batch, frames, -1).float()


class FrameFeatures(nn.Module):
    """Per-frame features of a batch: ``x [B, T, C, H, W]`` -> ``(F [B, T, d], raw [B, T, d0])``.

    ``F`` is standardised over T (plus the position column when ``position``); ``raw`` holds the same
    features before standardisation and without position, for pooled per-input summaries.

    kind: ``"fixed"`` (5 features, no parameters) or ``"learned"`` (the tiny CNN, ``learned_dim``
    features). ``fused``: compute the fixed features with ``torch.compile``'d kernels
    (:func:`fixed_features`).
    """

    def __init__(self, kind: str = "fixed", position: bool = False, learned_dim: int = 8, fused: bool = False) -> None:
        super().__init__()
        self.kind = check_choice("features", kind, FEATURE_KINDS)
        self.position = check_bool("position", position)
        self.fused = check_bool("fused_features", fused)
        if self.fused and kind != "fixed":
            raise ValueError(f"fused_features=True needs features='fixed' (it fuses the fixed features), got {kind!r}")
        check_int("learned_dim", learned_dim)
        self.cnn = LearnedFrameFeatures(learned_dim) if kind == "learned" else None
        self.raw_dim = learned_dim if kind == "learned" else len(FIXED_FEATURES)
        self.out_dim = self.raw_dim + int(position)
        self.check_finite = True  # set by the owning sampler (Sampler.check_finite)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raw = fixed_features(x, self.fused) if self.cnn is None else self.cnn(x)
        features = standardise_over_frames(raw)
        if self.check_finite:
            check_statistics(x, {"frame features": raw, "standardised frame features": features})
        if self.position:
            features = append_position(features)
        return features, raw

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, position={self.position}, out_dim={self.out_dim}, fused={self.fused}"
