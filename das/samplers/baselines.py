"""Samplers without parameters: full sequence, uniform and random."""

from __future__ import annotations

import torch
from torch import Tensor

from das.samplers.base import Sampler, Selection, hard_selection, one_hot_rows


class FullSampler(Sampler):
    """Every frame, in order (k = T): the full-sequence baseline."""

    def __init__(self, num_frames: int, k: int | None = None) -> None:
        super().__init__(num_frames, num_frames if k is None else k)
        if self.k != num_frames:
            raise ValueError(f"the full sampler keeps all frames: k must equal num_frames={num_frames}, got k={k}")

    def select(self, x: Tensor, generator: torch.Generator | None) -> Selection:
        indices = torch.arange(self.num_frames, device=x.device).expand(x.shape[0], -1)
        return Selection(x, one_hot_rows(indices, self.num_frames, x.dtype), indices)


class UniformSampler(Sampler):
    """k evenly spaced frames: frame ``floor((j + 1/2) T / k)`` for row j (the centre of each of k bins)."""

    def select(self, x: Tensor, generator: torch.Generator | None) -> Selection:
        centres = ((torch.arange(self.k, device=x.device) + 0.5) * self.num_frames / self.k).long()
        return hard_selection(x, centres.expand(x.shape[0], -1), self.num_frames)


class RandomSampler(Sampler):
    """k distinct frames uniformly at random, in temporal order.

    Training draws from ``generator`` (or the global RNG). Evaluation draws from a private generator
    that is re-seeded with ``seed`` each time the module enters eval mode, so a test pass repeats.
    """

    def __init__(self, num_frames: int, k: int, seed: int = 0) -> None:
        super().__init__(num_frames, k)
        self.seed = seed
        self._eval_generator = torch.Generator().manual_seed(seed)

    def train(self, mode: bool = True) -> RandomSampler:
        if not mode:
            self._eval_generator.manual_seed(self.seed)
        return super().train(mode)

    def select(self, x: Tensor, generator: torch.Generator | None) -> Selection:
        if not self.training:
            generator = self._eval_generator
        device = generator.device if generator is not None else x.device
        keys = torch.rand(x.shape[0], self.num_frames, generator=generator, device=device)
        indices = keys.argsort(dim=1)[:, : self.k].sort(dim=1).values
        return hard_selection(x, indices, self.num_frames)
