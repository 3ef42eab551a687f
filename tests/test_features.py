"""The fixed per-frame features: the sliced edge filters equal the conv2d definition, and
FlopCounterMode counts the custom operator with its hand-counted formula."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from das.flops import count_flops
from das.samplers import DASSampler
from das.samplers.features import edge_kernels, fixed_features, fixed_features_flops


def _reference(x: torch.Tensor) -> torch.Tensor:
    """The features by their definition: variance, difference, edges as one conv2d, intensity."""
    batch, frames = x.shape[:2]
    grey = x.mean(dim=2).reshape(batch * frames, 1, *x.shape[3:])
    if min(grey.shape[-2:]) < 3:
        grey = nn.functional.pad(grey, (1, 1, 1, 1), mode="replicate")
    edges = nn.functional.conv2d(grey, edge_kernels())
    difference = (x[:, 1:] - x[:, :-1]).abs().mean(dim=(2, 3, 4))
    difference = torch.cat([difference[:, :1], difference], dim=1) if frames > 1 else torch.zeros(batch, 1)
    return torch.stack(
        [
            x.var(dim=(2, 3, 4), unbiased=False),
            difference,
            edges[:, :2].square().sum(dim=1).sqrt().mean(dim=(1, 2)).view(batch, frames),
            edges[:, 2].abs().mean(dim=(1, 2)).view(batch, frames),
            x.mean(dim=(2, 3, 4)),
        ],
        dim=-1,
    )


@pytest.mark.parametrize("shape", [(2, 6, 1, 28, 28), (1, 5, 1, 4, 7), (3, 4, 3, 2, 2), (2, 1, 2, 5, 3)])
def test_fixed_features_equal_the_conv2d_definition(shape: tuple[int, ...]) -> None:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fixed_features(x), _reference(x), rtol=1e-5, atol=1e-6)


def test_flop_counter_counts_the_features_with_the_formula() -> None:
    x = torch.rand(1, 28, 1, 28, 28)
    flops = count_flops(fixed_features, x)
    assert flops == fixed_features_flops(x.shape) == 510_832  # about 23 FLOPs per voxel
    colour = torch.rand(2, 3, 3, 2, 2)  # channel mean and padding counted too
    assert count_flops(fixed_features, colour) == fixed_features_flops(colour.shape)


def test_fused_features_equal_the_eager_ones_and_count_the_same_flops() -> None:
    """``fused=True`` runs the same code compiled by torch.compile (one compilation per frame shape)."""
    for shape in [(2, 6, 1, 28, 28), (3, 4, 3, 2, 2)]:
        x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(fixed_features(x, fused=True), fixed_features(x), rtol=1e-5, atol=1e-6)
        assert count_flops(lambda v: fixed_features(v, fused=True), x) == fixed_features_flops(x.shape)
    with pytest.raises(ValueError, match="fused"):
        fixed_features(x, fused="yes")  # type: ignore[arg-type]


def test_das_with_fused_features_picks_what_das_picks() -> None:
    x = torch.rand(4, 12, 1, 10, 10, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    eager = DASSampler(12, 5).eval()
    fused = DASSampler(12, 5, fused_features=True).eval()
    fused.load_state_dict(eager.state_dict())
    with torch.no_grad():
        assert torch.equal(fused(x).indices, eager(x).indices)
    assert "fused=True" in repr(fused.features)
