"""ADPS: Active Deep Probabilistic Subsampling (van Gorp et al., ICML 2021), for frames.

k sequential steps, one new frame per step, conditioned on what was already acquired::

    F          [B, T, d]   cheap per-frame features (features.py; fixed, with position by default)
    input_j    [B, 2 d]    [features of the frame taken at step j-1, mean features of frames 0..j-1]
                           (zeros at step 0), read through the selection rows P_i = one-hot (forward)
                           with the straight-through gradient, so later steps train earlier ones
    h_j, c_j   = LSTMCell(input_j, (h_{j-1}, c_{j-1}))          hidden size ``hidden``
    logits_j   = Linear(h_j) -> [B, T], frames already taken masked with -inf
    training   P_j = straight-through(one_hot(argmax(logits_j + G_j)), softmax((logits_j + G_j) / tau))
    eval       argmax(logits_j), no noise

Differences from the original, on purpose: one LSTM and one logit head shared by all k steps (the
original used a separate head per step); the acquired information is the pooled cheap features of the
acquired frames rather than the raw measurements. The loop runs over the k steps only, never over the
batch, and reads no tensor value on the host. Rows come out in temporal order, like every sampler.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from das.checks import check_int, check_positive_float
from das.samplers.base import Sampler, Selection, one_hot_rows
from das.samplers.features import FrameFeatures
from das.samplers.gumbel import gumbel_topk, temporal_selection


class ADPSSampler(Sampler):
    """Sequential input-adaptive sampler. Options: ``hidden`` (LSTM width), ``tau`` (> 0), ``position``."""

    def __init__(self, num_frames: int, k: int, hidden: int = 32, tau: float = 1.0, position: bool = True) -> None:
        super().__init__(num_frames, k)
        self.hidden = check_int("hidden", hidden)
        self.tau = check_positive_float("tau", tau)
        self.features = FrameFeatures("fixed", position)
        self.lstm = nn.LSTMCell(2 * self.features.out_dim, hidden)
        self.head = nn.Linear(hidden, num_frames)

    def select(self, x: Tensor, generator: torch.Generator | None) -> Selection:
        features, _ = self.features(x)
        batch = x.shape[0]
        state = (features.new_zeros(batch, self.hidden), features.new_zeros(batch, self.hidden))
        last = features.new_zeros(batch, features.shape[-1])
        total = torch.zeros_like(last)
        mask = features.new_zeros(batch, self.num_frames)
        rows, picks = [], []
        for step in range(self.k):
            state = self.lstm(torch.cat([last, total / max(step, 1)], dim=-1), state)
            state = (state[0].float(), state[1].float())
            logits = self.head(state[0]).float() + mask
            if self.training:
                row, pick = gumbel_topk(logits, 1, self.tau, generator, replacement=True)
            else:
                pick = logits.argmax(dim=-1, keepdim=True)
                row = one_hot_rows(pick, self.num_frames, torch.float32)
            rows.append(row)
            picks.append(pick)
            last = torch.einsum("bt,btd->bd", row[:, 0], features).float()
            total = total + last
            mask = mask.scatter(1, pick, float("-inf"))
        return temporal_selection(x, torch.cat(rows, dim=1), torch.cat(picks, dim=1))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, hidden={self.hidden}, tau={self.tau}"
