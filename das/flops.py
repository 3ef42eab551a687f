"""Compute cost by counting, not by hand: FLOPs with ``torch.utils.flop_counter.FlopCounterMode``.

FlopCounterMode counts the matrix products and convolutions (2 FLOPs per multiply-add), the ops that
dominate a CNN; elementwise work (activations, normalisation, softmax, sorting, Gumbel noise) is not
counted, with one exception: the samplers' fixed per-frame features (:mod:`das.samplers.features`),
which are almost all elementwise, run as one operator whose FLOP formula is registered with the
counter. So a sampler's share of the backbone is, if anything, overstated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from das.samplers.base import Sampler


def count_flops(module_or_fn: nn.Module | Callable[..., object], *inputs: object) -> int:
    """FLOPs of one call ``module_or_fn(*inputs)`` under ``torch.no_grad()`` (forward only)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module_or_fn(*inputs)
    return int(counter.get_total_flops())


def sampler_cost(sampler: Sampler, input_shape: Sequence[int]) -> tuple[int, int]:
    """``(flops, params)`` of the sampler at inference on one batch of shape ``[B, T, C, H, W]``.

    The sampler runs in evaluation mode (the inference path) on random input of that shape on the
    sampler's device; its training/eval mode is restored afterwards. ``params`` counts every
    parameter of the sampler (trainable or not).
    """
    parameter = next(sampler.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    x: Tensor = torch.rand(tuple(input_shape), generator=torch.Generator().manual_seed(0)).to(device)
    was_training = sampler.training
    sampler.eval()
    try:
        flops = count_flops(sampler, x)
    finally:
        sampler.train(was_training)
    return flops, sum(p.numel() for p in sampler.parameters())
