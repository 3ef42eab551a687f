"""The Gumbel relaxation: exact sampling distributions, exact one-hot rows, the straight-through gradient."""

from __future__ import annotations

import itertools

import pytest
import torch
from scipy.stats import chi2

from das.samplers.base import hard_selection
from das.samplers.gumbel import (
    gumbel_noise,
    gumbel_topk,
    plackett_luce_log_prob,
    straight_through,
    temporal_selection,
    topk_indices,
)

DRAWS = 20_000


def _pair_frequencies(indices: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Counts of ordered (first pick, second pick) pairs: ``[T, T]``."""
    return torch.bincount(indices[:, 0] * num_frames + indices[:, 1], minlength=num_frames**2).view(num_frames, -1)


def _chi_square_p_value(counts: torch.Tensor, probabilities: torch.Tensor) -> float:
    """Pearson chi-square goodness of fit over the cells with positive probability."""
    keep = probabilities > 0
    assert counts[~keep].sum() == 0, "a pair of probability 0 was drawn"
    expected = probabilities[keep] * counts.sum()
    statistic = ((counts[keep] - expected) ** 2 / expected).sum().item()
    return float(chi2.sf(statistic, int(keep.sum()) - 1))


def _sequential_pairs(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Exact P(first pick i, second pick j) drawing without replacement, row 1 from softmax(first),
    row 2 from softmax(second) renormalised over the frames still free."""
    p, q = first.softmax(-1), second.softmax(-1)
    num_frames = p.numel()
    table = torch.zeros(num_frames, num_frames, dtype=torch.float64)
    for i, j in itertools.permutations(range(num_frames), 2):
        table[i, j] = p[i] * q[j] / (1 - q[i])
    return table


LOGITS = torch.tensor([1.0, 0.5, 0.0, -1.0])


def test_shared_scores_topk_matches_sequential_sampling_without_replacement() -> None:
    """DPS path (one perturbation per frame, top-k): ordered pairs follow sequential draws."""
    generator = torch.Generator().manual_seed(0)
    _, indices = gumbel_topk(LOGITS.expand(DRAWS, -1), 2, 1.0, generator)
    counts = _pair_frequencies(indices, 4)
    assert _chi_square_p_value(counts, _sequential_pairs(LOGITS, LOGITS)) > 1e-3


def test_row_scores_sequential_masking_matches_sequential_sampling() -> None:
    """DAS path (row-specific scores, independent noise, masking): the exact sequential law."""
    second = torch.tensor([-0.5, 2.0, 0.3, 0.0])
    rows = torch.stack([LOGITS, second]).expand(DRAWS, -1, -1)
    _, indices = gumbel_topk(rows, 2, 1.0, torch.Generator().manual_seed(1))
    assert _chi_square_p_value(_pair_frequencies(indices, 4), _sequential_pairs(LOGITS, second)) > 1e-3
    # Identical rows through the sequential path give the same law as the top-k path.
    _, same = gumbel_topk(LOGITS.expand(DRAWS, 2, -1), 2, 1.0, torch.Generator().manual_seed(2))
    assert _chi_square_p_value(_pair_frequencies(same, 4), _sequential_pairs(LOGITS, LOGITS)) > 1e-3


def test_with_replacement_rows_are_independent_draws() -> None:
    _, indices = gumbel_topk(LOGITS.expand(DRAWS, -1), 2, 1.0, torch.Generator().manual_seed(3), replacement=True)
    p = LOGITS.double().softmax(-1)
    assert _chi_square_p_value(_pair_frequencies(indices, 4), torch.outer(p, p)) > 1e-3
    assert (indices[:, 0] == indices[:, 1]).any()


@pytest.mark.parametrize("row_specific", [False, True])
def test_rows_exactly_one_hot_masked_and_straight_through(row_specific: bool) -> None:
    batch, k, frames = 5, 4, 6
    scores = torch.randn(batch, k, frames) if row_specific else torch.randn(batch, frames)
    scores.requires_grad_(True)
    weights, indices = gumbel_topk(scores, k, 0.7, torch.Generator().manual_seed(4))
    assert torch.equal(weights.detach(), torch.nn.functional.one_hot(indices, frames).float())
    assert all(len(set(row.tolist())) == k for row in indices)
    weights.sum().backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0


def test_straight_through_forward_hard_backward_soft() -> None:
    logits = torch.randn(3, 5, requires_grad=True)
    soft = logits.softmax(-1)
    hard = torch.nn.functional.one_hot(soft.argmax(-1), 5).float()
    mixed = straight_through(hard, soft)
    assert torch.equal(mixed, hard)
    weight = torch.randn(3, 5)
    (mixed * weight).sum().backward()
    expected = torch.autograd.grad((logits.softmax(-1) * weight).sum(), logits)[0]
    assert torch.allclose(logits.grad, expected)


def test_masked_rows_give_zero_soft_weight_to_earlier_picks() -> None:
    """Row j's soft relaxation puts no mass on frames picked by rows < j (visible in the gradient)."""
    scores = torch.zeros(2, 5, requires_grad=True)
    weights, indices = gumbel_topk(scores, 3, 1.0, torch.Generator().manual_seed(5))
    last_row_grad = torch.autograd.grad(weights[:, 2].sum() + (weights[:, 2] * torch.arange(5.0)).sum(), scores)[0]
    for b in range(2):
        assert torch.all(last_row_grad[b, indices[b, :2]] == 0)


def test_noise_repeats_with_seed_and_is_gumbel() -> None:
    a = gumbel_noise((1000, 7), torch.device("cpu"), torch.Generator().manual_seed(6))
    b = gumbel_noise((1000, 7), torch.device("cpu"), torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert abs(a.mean().item() - 0.5772) < 0.05  # Euler-Mascheroni constant: the Gumbel(0, 1) mean


def test_temporal_selection_sorts_rows_and_keeps_gradient() -> None:
    x = torch.randn(2, 5, 1, 2, 2)
    scores = torch.randn(2, 5, requires_grad=True)
    weights, indices = gumbel_topk(scores, 3, 1.0, torch.Generator().manual_seed(7))
    selection = temporal_selection(x, weights, indices)
    assert torch.all(selection.indices[:, 1:] > selection.indices[:, :-1])
    assert torch.equal(selection.weights.argmax(-1), selection.indices)
    expected = x[torch.arange(2)[:, None], selection.indices]
    assert torch.equal(selection.frames, expected)
    selection.frames.sum().backward()
    assert scores.grad is not None


def test_evaluation_picks_the_top_k_in_temporal_order_as_one_hot_rows() -> None:
    scores = torch.tensor([[0.1, 3.0, -1.0, 2.0, 5.0], [4.0, 0.0, 1.0, -2.0, 0.5]])
    indices = topk_indices(scores, 3)
    assert indices.tolist() == [[1, 3, 4], [0, 2, 4]]
    x = torch.randn(2, 5, 1, 2, 2)
    selection = hard_selection(x, indices, 5)
    assert torch.equal(selection.frames, x[torch.arange(2)[:, None], indices])
    assert torch.equal(selection.weights, torch.nn.functional.one_hot(indices, 5).float())
    assert torch.equal(selection.weights @ x.flatten(2), selection.frames.flatten(2))  # P X, without the product


def _all_pairs() -> torch.Tensor:
    """Every ordered pair of distinct frames of 4: ``[12, 2]``."""
    return torch.tensor(list(itertools.permutations(range(4), 2)))


@pytest.mark.parametrize("row_specific", [False, True])
def test_plackett_luce_log_prob_is_the_law_of_the_ordered_picks(row_specific: bool) -> None:
    """exp(log_prob) equals the exact sequential law and the empirical frequency of each ordered pair."""
    second = torch.tensor([-0.5, 2.0, 0.3, 0.0]) if row_specific else LOGITS
    pairs = _all_pairs()
    scores = torch.stack([LOGITS, second]) if row_specific else LOGITS
    log_prob = plackett_luce_log_prob(scores.expand(len(pairs), *scores.shape), pairs)
    exact = _sequential_pairs(LOGITS, second)
    assert torch.allclose(log_prob.double(), exact[pairs[:, 0], pairs[:, 1]].log(), atol=1e-5)
    assert torch.allclose(log_prob.exp().sum(), torch.tensor(1.0), atol=1e-5)
    _, indices = gumbel_topk(scores.expand(DRAWS, *scores.shape), 2, 0.3, torch.Generator().manual_seed(6))
    frequencies = _pair_frequencies(indices, 4).double() / DRAWS
    assert (frequencies[pairs[:, 0], pairs[:, 1]] - log_prob.double().exp()).abs().max() < 0.01


def test_plackett_luce_log_prob_with_replacement_and_gradient() -> None:
    scores = LOGITS.clone().requires_grad_(True)
    picks = torch.tensor([[0, 0], [2, 1]])
    log_prob = plackett_luce_log_prob(scores.expand(2, -1), picks, replacement=True)
    p = LOGITS.softmax(-1)
    assert torch.allclose(log_prob, torch.stack([2 * p[0].log(), p[2].log() + p[1].log()]))
    log_prob[1].backward()  # d log p / d scores = one_hot(2) + one_hot(1) - 2 softmax
    assert torch.allclose(scores.grad, torch.tensor([0.0, 1.0, 1.0, 0.0]) - 2 * p)
