"""Sampler cost, counted with FlopCounterMode (das.flops)."""

from __future__ import annotations

import torch
from torch import nn

from das.backbone import FrameEncoder
from das.flops import count_flops, sampler_cost
from das.samplers import DASSampler, make_sampler


def test_count_flops_counts_matrix_products() -> None:
    assert count_flops(nn.Linear(10, 7), torch.rand(3, 10)) == 2 * 3 * 10 * 7
    assert count_flops(lambda a, b: a @ b, torch.rand(4, 5), torch.rand(5, 6)) == 2 * 4 * 5 * 6


def test_das_sampler_costs_under_3_percent_of_the_backbone() -> None:
    """DAS (defaults, k=14) at B=1, 28 slices of 1x28x28, inference, measured with FlopCounterMode:
    sampler 521,584 FLOPs (the fixed features 510,832, every elementwise operation counted, + MLP_base
    10,752) and 4,393 parameters; FrameEncoder(1) (MobileNetV3-Small trunk) on the 28 slices
    81,988,480 FLOPs (convolutions and matrix products only): 0.64 %."""
    sampler = DASSampler(28, 14)
    flops, params = sampler_cost(sampler, (1, 28, 1, 28, 28))
    backbone = count_flops(FrameEncoder(1).eval(), torch.rand(28, 1, 28, 28))
    assert 0 < flops < 0.03 * backbone
    assert params == sum(p.numel() for p in sampler.parameters()) > 0


def test_sampler_cost_restores_mode_and_counts_parameter_free_samplers() -> None:
    sampler = make_sampler("das", 8, 2, features="learned").train()
    flops, _ = sampler_cost(sampler, (2, 8, 1, 6, 6))
    assert sampler.training and flops > 0
    assert sampler_cost(make_sampler("uniform", 8, 2), (2, 8, 1, 6, 6)) == (0, 0)
