"""Gumbel relaxations shared by the learnable samplers (DAS, DPS, ADPS).

Training picks k frames per input by perturbing scores with Gumbel noise; the selection matrix P
(``[B, k, T]``) is the hard one-hot argmax in the forward pass and carries the gradient of the soft
relaxation ``softmax((scores + G) / tau)`` in the backward pass (straight-through estimator).

Without replacement, row j masks with ``-inf`` the frames picked by rows ``< j`` before both its
argmax and its softmax, as the DPS authors' ``DPS_topK.py`` (Huijben et al. 2020) does. The hard
picks are then an exact draw of k distinct frames:

* scores shared by every row (``[B, T]``, DPS): one noise draw per frame, top-k of the perturbed
  scores (the Gumbel-top-k trick: equal in distribution to k sequential draws without replacement);
* scores specific to each row (``[B, k, T]``, DAS): independent noise per row, row j takes the argmax
  of its perturbed scores over the frames still free. That is k sequential categorical draws, each
  from ``softmax(scores[:, j])`` restricted to the free frames, and needs a loop over the k rows (not
  over the batch): each row's mask depends on the picks before it.

Nothing here reads tensor values on the host, so CUDA graphs and ``torch.compile`` can capture it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from das.samplers.base import Selection, apply_selection, one_hot_rows


def gumbel_noise(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """Standard Gumbel(0, 1) noise in float32, drawn from ``generator`` (or the global RNG of ``device``).

    The draw happens on the generator's own device, so a seeded CPU generator gives the same noise
    whatever device the model runs on; it is then moved to ``device`` (non-blocking: a host-to-device
    copy that does not wait for the GPU).
    """
    source = generator.device if generator is not None else device
    uniform = torch.rand(shape, generator=generator, device=source)
    # rand is in [0, 1); clamping away 0 keeps -log(-log(u)) finite.
    uniform = uniform.clamp_min(torch.finfo(uniform.dtype).tiny)
    return (-torch.log(-torch.log(uniform))).to(device, non_blocking=True)


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """``hard`` in the forward pass, the gradient of ``soft`` in the backward pass.

    Written ``hard + (soft - soft.detach())`` rather than ``hard - soft.detach() + soft``: the same
    gradient, but the bracket is exactly zero in the forward pass, so rows stay exactly one-hot.
    """
    return hard + (soft - soft.detach())


def gumbel_topk(
    scores: Tensor,
    k: int,
    tau: Tensor | float,
    generator: torch.Generator | None = None,
    replacement: bool = False,
) -> tuple[Tensor, Tensor]:
    """Draw k frames per input by the masked k-row Gumbel-softmax relaxation with straight-through.

    scores: ``[B, T]`` (the same logits for every row) or ``[B, k, T]`` (one row of logits per pick).
    tau:    temperature of the soft relaxation, a float or a tensor broadcastable to ``[B, k, T]``
            (e.g. ``[B, 1, 1]`` for one temperature per input); it does not change the hard picks.
    replacement: if True every row draws independently (no masking: a frame can be picked twice).

    Returns ``(weights [B, k, T] float32, indices [B, k] int64)`` with rows in pick order.
    """
    scores = scores.float()
    batch, frames = scores.shape[0], scores.shape[-1]
    rows = scores if scores.dim() == 3 else scores.unsqueeze(1).expand(-1, k, -1)
    if replacement:
        perturbed = rows + gumbel_noise((batch, k, frames), scores.device, generator)
        indices = perturbed.argmax(dim=-1)
        masks = torch.zeros_like(perturbed)
    elif scores.dim() == 2:
        # DPS: one perturbation per frame shared by all rows; row j's free argmax is the j-th largest.
        perturbed = (scores + gumbel_noise((batch, frames), scores.device, generator)).unsqueeze(1)
        indices = perturbed[:, 0].topk(k, dim=-1).indices
        masks = _exclusive_masks(indices, frames)
        perturbed = perturbed.expand(-1, k, -1)
    else:
        perturbed = rows + gumbel_noise((batch, k, frames), scores.device, generator)
        indices, masks = _sequential_picks(perturbed)
    # Mask after dividing by tau: -inf / tau would make d/dtau NaN at the masked frames.
    soft = torch.softmax(perturbed / tau + masks, dim=-1)
    return straight_through(one_hot_rows(indices, frames, soft.dtype), soft), indices


def plackett_luce_log_prob(scores: Tensor, indices: Tensor, replacement: bool = False) -> Tensor:
    """Log-probability ``[B]`` of the ordered picks ``indices [B, k]`` that :func:`gumbel_topk` draws
    from ``scores`` (``[B, T]`` shared by every row, or ``[B, k, T]`` one row of logits per pick).

    Without replacement the hard picks are k sequential categorical draws, row j from
    ``softmax(scores_j)`` over the frames not taken by rows ``< j`` (the Plackett-Luce model when the
    rows share their scores), so ``log p = sum_j log_softmax(scores_j + M_j)[indices_j]``; with
    replacement the rows are independent (no masks). The temperature plays no part: it only shapes
    the soft relaxation, not the draw. Differentiable in ``scores``: the score-function (REINFORCE)
    estimator's ``(loss - baseline) * log p`` term.
    """
    scores = scores.float()
    k, frames = indices.shape[1], scores.shape[-1]
    rows = scores if scores.dim() == 3 else scores.unsqueeze(1).expand(-1, k, -1)
    if not replacement:
        rows = rows + _exclusive_masks(indices, frames)
    return rows.log_softmax(dim=-1).gather(-1, indices.unsqueeze(-1)).squeeze(-1).sum(dim=1)


def _exclusive_masks(indices: Tensor, num_frames: int) -> Tensor:
    """``[B, k]`` picks -> ``[B, k, T]`` additive masks: row j is ``-inf`` at the picks of rows ``< j``."""
    picked = one_hot_rows(indices, num_frames, torch.float32)
    earlier = picked.cumsum(dim=1) - picked  # exclusive cumulative sum over rows
    return torch.zeros_like(earlier).masked_fill(earlier > 0, float("-inf"))


def _sequential_picks(perturbed: Tensor) -> tuple[Tensor, Tensor]:
    """Row by row: argmax over the frames not yet taken. Returns indices ``[B, k]`` and masks ``[B, k, T]``."""
    mask = torch.zeros_like(perturbed[:, 0])
    masks, picks = [], []
    for row in perturbed.unbind(dim=1):
        masks.append(mask)
        pick = (row + mask).argmax(dim=-1, keepdim=True)
        picks.append(pick)
        mask = mask.scatter(1, pick, float("-inf"))
    return torch.cat(picks, dim=1), torch.stack(masks, dim=1)


def topk_indices(scores: Tensor, k: int) -> Tensor:
    """Evaluation: the k highest scores ``[B, T]`` -> ``[B, k]`` indices in temporal order, without noise."""
    return scores.float().topk(k, dim=-1).indices.sort(dim=1).values


def temporal_selection(x: Tensor, weights: Tensor, indices: Tensor) -> Selection:
    """Put the k rows in temporal order (rows sorted by frame index) and gather the frames.

    ``weights`` rows are permuted with the indices (a differentiable gather, so the straight-through
    gradient survives). Frames are ``weights @ x`` when a gradient must flow through the weights,
    else a gather by index (see :func:`apply_selection`).
    """
    indices, order = indices.sort(dim=1)
    weights = weights.gather(1, order.unsqueeze(-1).expand(-1, -1, weights.shape[-1])).to(x.dtype)
    return Selection(apply_selection(x, weights, indices), weights, indices)
