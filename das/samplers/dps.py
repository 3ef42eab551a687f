"""DPS: Deep Probabilistic Subsampling (Huijben et al., ICLR 2020), top-k form.

One learned logit per frame position, ``logits [T]``, shared by every input: task-adaptive but
static (the same pattern for every input at evaluation). Training follows the authors' PyTorch
``DPS_topK.py``: one Gumbel perturbation per position and input, the hard picks are the top-k of
``logits + G``, and row j of the soft relaxation is ``softmax((logits + G + M_j) / tau)`` where
``M_j`` masks with ``-inf`` the positions taken by rows < j; straight-through estimator
(:func:`das.samplers.gumbel.gumbel_topk`). Evaluation: top-k of the logits, no noise.

Logits start as ``N(0, 1) * k / T`` (the authors' ``randn / compression``): small enough that
training starts near uniform random sampling, random enough that an untrained evaluation does not
fall back on tie-breaking. Rows come out in temporal order, like every sampler here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from das.checks import check_positive_float
from das.samplers.base import Sampler, Selection, hard_selection
from das.samplers.gumbel import gumbel_topk, temporal_selection, topk_indices


class DPSSampler(Sampler):
    """Static learned sampler: ``logits [T]``; option ``tau`` (> 0), the Gumbel-softmax temperature."""

    def __init__(self, num_frames: int, k: int, tau: float = 1.0) -> None:
        super().__init__(num_frames, k)
        self.tau = check_positive_float("tau", tau)
        self.logits = nn.Parameter(torch.randn(num_frames) * (k / num_frames))

    def select(self, x: Tensor, generator: torch.Generator | None) -> Selection:
        logits = self.logits.expand(x.shape[0], -1)
        if not self.training:
            return hard_selection(x, topk_indices(logits, self.k), self.num_frames)
        return temporal_selection(x, *gumbel_topk(logits, self.k, self.tau, generator))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tau={self.tau}"
