"""The sampler contract: every frame/slice sampler takes ``x`` of shape ``[B, T, C, H, W]`` and
returns a :class:`Selection` of ``k`` frames per input.

Subclasses implement :meth:`Sampler.select`; :meth:`Sampler.forward` validates the input first, so
every sampler rejects bad input with the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from das.checks import check_int


@dataclass(frozen=True)
class Selection:
    """What a sampler chose for each input of a batch.

    frames:  ``[B, k, C, H, W]`` the selected frames (``weights @ x`` per input).
    weights: ``[B, k, T]`` the selection matrix P; every row is one-hot in the forward pass. In
             training mode of a learnable sampler it carries the straight-through gradient.
    indices: ``[B, k]`` int64, the frame each row picked.
    log_prob: ``[B]`` log-probability of the picks (in pick order) under the sampler's distribution,
             differentiable in its parameters; set only by samplers trained with the score-function
             estimator (``estimator="score"``), for the trainer's REINFORCE term; ``None`` otherwise.
    """

    frames: Tensor
    weights: Tensor
    indices: Tensor
    log_prob: Tensor | None = None


def check_input(x: object, num_frames: int, check_finite: bool = True) -> Tensor:
    """Reject anything but a finite floating ``[B, T, C, H, W]`` tensor with ``T == num_frames``.

    ``check_finite`` is the one check that reads values, and so the one that waits for the device;
    hot loops turn it off through ``Sampler.check_finite`` (the trainer, whose uint8 data are
    finite by construction, and the benchmark); it also splits a ``torch.compile`` graph.
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch.Tensor of shape [B, T, C, H, W], got {type(x).__name__}")
    if x.dim() != 5:
        raise ValueError(f"x must be 5-D [B, T, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must have a floating dtype (float32, float16, bfloat16, ...), got {x.dtype}")
    if x.shape[1] != num_frames:
        raise ValueError(
            f"x has T={x.shape[1]} frames (shape {tuple(x.shape)}) but the sampler was built for "
            f"num_frames={num_frames}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"x has an empty batch: shape {tuple(x.shape)}")
    # A finite sum proves every value finite in one reduction; only a non-finite sum (NaN/Inf, or an
    # overflow of huge finite values) pays for the elementwise check.
    if check_finite and not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        raise ValueError("x contains NaN or Inf values; samplers need finite input")
    return x


def check_statistics(x: Tensor, statistics: dict[str, Tensor]) -> None:
    """Reject a finite ``x`` whose per-frame ``statistics`` (by name: features, scores) came out NaN or Inf:
    values so large that the float32 statistics overflow (their squares pass float32's maximum).

    One host read for all of them; callers run it only when ``Sampler.check_finite`` is on.
    """
    finite = torch.stack([torch.isfinite(value).all() for value in statistics.values()])
    if not finite.all():
        bad = ", ".join(name for name, ok in zip(statistics, finite.tolist(), strict=True) if not ok)
        largest = torch.linalg.vector_norm(x.detach(), ord=float("inf")).item()
        raise ValueError(
            f"x has values too large for the sampler's float32 frame statistics (max |x| = {largest:.3g}): "
            f"its {bad} overflow to NaN or Inf; rescale x, e.g. to [0, 1]"
        )


def one_hot_rows(indices: Tensor, num_frames: int, dtype: torch.dtype) -> Tensor:
    """``[B, k]`` indices -> ``[B, k, T]`` one-hot selection matrix."""
    return torch.nn.functional.one_hot(indices, num_frames).to(dtype)


def gather_frames(x: Tensor, indices: Tensor) -> Tensor:
    """Pick ``x[b, indices[b, j]]`` for every row: ``[B, T, C, H, W]``, ``[B, k]`` -> ``[B, k, C, H, W]``.

    One ``index_select`` of whole frames from the flattened batch: about 5x faster on CPU than
    ``torch.gather`` with an index expanded to every pixel.
    """
    batch, num_frames = x.shape[:2]
    rows = indices + num_frames * torch.arange(batch, device=indices.device).unsqueeze(1)
    return x.flatten(0, 1).index_select(0, rows.flatten()).view(*indices.shape, *x.shape[2:])


def hard_selection(x: Tensor, indices: Tensor, num_frames: int) -> Selection:
    """The selection of the frames ``indices [B, k]`` (in temporal order) with one-hot rows and no
    gradient: the static baselines, and the learned samplers' deterministic evaluation."""
    # Non-blocking: indices drawn by a CPU generator reach the GPU without a stream synchronisation.
    indices = indices.to(x.device, non_blocking=True)
    return Selection(gather_frames(x, indices), one_hot_rows(indices, num_frames, x.dtype), indices)


def apply_selection(x: Tensor, weights: Tensor, indices: Tensor) -> Tensor:
    """Selected frames: a dense ``P @ X`` when gradients must flow through ``P``, else a gather.

    The two are equal in value (P is one-hot); the gather costs k frame copies instead of k*T
    multiply-adds per pixel, which matters at inference.
    """
    if torch.is_grad_enabled() and weights.requires_grad:
        return torch.einsum("bkt,btchw->bkchw", weights.to(x.dtype), x)
    return gather_frames(x, indices)


class Sampler(nn.Module):
    """Base class: choose ``k`` of ``num_frames`` frames for every input of a batch."""

    def __init__(self, num_frames: int, k: int) -> None:
        super().__init__()
        self.num_frames = check_int("num_frames", num_frames)
        self.k = check_int("k", k)
        if k > num_frames:
            raise ValueError(f"k={k} must be at most num_frames={num_frames} (cannot pick more frames than exist)")
        self.check_finite = True

    @property
    def check_finite(self) -> bool:
        """Whether the forward pass reads values to reject non-finite input (:func:`check_input`)
        and inputs whose frame statistics overflow (:func:`check_statistics`)."""
        return self._check_finite

    @check_finite.setter
    def check_finite(self, value: bool) -> None:
        self._check_finite = value
        # Submodules with their own checks (das.samplers.features.FrameFeatures) follow the sampler.
        for module in self.modules():
            if module is not self and isinstance(getattr(module, "check_finite", None), bool):
                module.check_finite = value

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Selection:
        return self.select(check_input(x, self.num_frames, self.check_finite), generator)

    def select(self, x: Tensor, generator: torch.Generator | None) -> Selection:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"num_frames={self.num_frames}, k={self.k}"
