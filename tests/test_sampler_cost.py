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


def test_a_convolution_is_counted_as_its_multiply_adds() -> None:
    """Against an independent count: a 3x3 convolution, 1 -> 16 channels, stride 2, on a 28x28 frame
    has 14x14 outputs per channel, each 9 multiply-adds (2 FLOPs); a depthwise one divides by groups."""
    x = torch.rand(2, 1, 28, 28)
    assert count_flops(nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False), x) == 2 * 2 * 16 * 14 * 14 * 9
    depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
    assert count_flops(depthwise, torch.rand(1, 16, 10, 10)) == 2 * 16 * 10 * 10 * 9


def test_fixed_features_are_counted_per_pixel() -> None:
    """The features' registered formula grows linearly with the pixels: doubling the frames doubles it."""
    sampler = DASSampler(8, 4, base="variance", adaptive_temperature=False)
    one, _ = sampler_cost(sampler, (1, 8, 1, 16, 16))
    two, _ = sampler_cost(sampler, (2, 8, 1, 16, 16))
    assert one > 8 * 16 * 16 and two == 2 * one


def test_das_sampler_costs_under_3_percent_of_the_backbone() -> None:
    """DAS (defaults, k=14) at B=1 on 28 slices of 28x28, inference: the sampler's counted FLOPs
    (fixed features, every elementwise operation counted, and MLP_base) against the MobileNetV3-Small
    trunk on the 28 slices (convolutions and matrix products only)."""
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
