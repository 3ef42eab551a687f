"""Training-time augmentation of whole batches of volumes, on the batch's device.

``x [B, T, C, H, W]`` in [0, 1] -> a tensor of the same shape, dtype and device. Every volume of the
batch gets its own random transform: kornia draws the parameters per item and applies them to the
whole batch in one call, so augmenting costs a few batched kernels, not a Python loop over items.
The parameters come from torch's global RNG, which the trainer seeds per run and checkpoints, so an
augmented run is as reproducible (and resumable) as a plain one.

:data:`AUGMENTATIONS` names the recipes (``TrainConfig.augment``); the experiments chapter says which
one the real-data protocol uses and why:

- ``"none"``: the identity.
- ``"flip"``: a left-right flip with probability 0.5 (the W axis: the body's left-right symmetry).
- ``"affine"``: the flip, then a small 3D affine transform of every volume: rotations up to 10 degrees
  about each axis, shifts up to 10% of each side, scaling by 0.9-1.1 (bilinear, zero padding).
- ``"affine_intensity"``: ``"affine"``, then brightness and contrast each scaled by 0.9-1.1 per
  volume (clipped to [0, 1]), for grey-level volumes.
"""

from __future__ import annotations

from collections.abc import Callable

import kornia.augmentation as K
from torch import Tensor, nn


class VolumeAugmentation(nn.Module):
    """Apply kornia 3D ``spatial`` transforms (on ``[B, C, T, H, W]``) and 2D ``intensity`` transforms
    (on ``[B, T * C, H, W]``, one draw per volume) to ``x [B, T, C, H, W]``."""

    def __init__(self, spatial: list[nn.Module], intensity: list[nn.Module] | None = None) -> None:
        super().__init__()
        self.spatial = nn.Sequential(*spatial)
        self.intensity = nn.Sequential(*(intensity or []))

    def forward(self, x: Tensor) -> Tensor:
        batch, frames, channels, height, width = x.shape
        out = self.spatial(x.transpose(1, 2)).transpose(1, 2)
        if len(self.intensity):
            out = self.intensity(out.reshape(batch, frames * channels, height, width))
        return out.reshape(batch, frames, channels, height, width).contiguous().to(x.dtype)


def _flip() -> list[nn.Module]:
    return [K.RandomHorizontalFlip3D(p=0.5)]


def _affine() -> list[nn.Module]:
    return [*_flip(), K.RandomAffine3D(degrees=10.0, translate=(0.1, 0.1, 0.1), scale=(0.9, 1.1), p=1.0)]


def _intensity() -> list[nn.Module]:
    return [K.RandomBrightness(brightness=(0.9, 1.1), p=1.0), K.RandomContrast(contrast=(0.9, 1.1), p=1.0)]


# name -> builder of the augmentation module (None: no augmentation).
AUGMENTATIONS: dict[str, Callable[[], VolumeAugmentation] | None] = {
    "none": None,
    "flip": lambda: VolumeAugmentation(_flip()),
    "affine": lambda: VolumeAugmentation(_affine()),
    "affine_intensity": lambda: VolumeAugmentation(_affine(), _intensity()),
}


def make_augmentation(name: str) -> VolumeAugmentation | None:
    """The augmentation called ``name`` (``None`` for ``"none"``); ``ValueError`` naming the valid ones."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(AUGMENTATIONS)}")
    builder = AUGMENTATIONS[name]
    return None if builder is None else builder()
