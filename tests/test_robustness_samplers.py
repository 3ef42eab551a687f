"""Every sampler on inputs other than ordinary float32: half, bfloat16 and double precision, and
finite values so large that float32 statistics overflow. Each either works (k distinct picks at
evaluation, finite frames equal to the input's) or raises one clear ValueError."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from das.samplers import SAMPLERS, Sampler, make_sampler

T, K = 8, 3
VARIANTS = [(name, {}) for name in SAMPLERS] + [
    ("das", {"features": "learned"}),
    ("das", {"features": "learned", "base": "variance", "position": True}),
    ("das", {"base": "variance", "estimator": "score"}),
]
IDS = [f"{name}-{'-'.join(map(str, options.values())) or 'default'}" for name, options in VARIANTS]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _build(name: str, options: dict[str, object]) -> Sampler:
    torch.manual_seed(0)
    return make_sampler(name, T, T if name == "full" else K, **options)


def _check_works(sampler: Sampler, x: torch.Tensor) -> None:
    """Frames are the input's frames at the indices (finite, same dtype), also through the training
    path that multiplies the selection matrix into x; evaluation picks are distinct."""
    for training in (True, False):
        sampler.train(training)
        with torch.set_grad_enabled(training):
            selection = sampler(x, torch.Generator().manual_seed(1))
        frames, batch = selection.frames.detach(), x.shape[0]
        assert frames.dtype == x.dtype and torch.isfinite(frames).all()
        assert torch.isfinite(selection.weights).all()
        assert torch.equal(frames, x[torch.arange(batch)[:, None], selection.indices])
        if not training or sampler.k == sampler.num_frames:
            assert (selection.indices.diff(dim=1) > 0).all(), "a frame was picked twice"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_every_sampler_takes_half_bfloat16_and_double_input(
    name: str, options: dict[str, object], dtype: torch.dtype
) -> None:
    x = torch.rand(3, T, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    sampler = _build(name, options)
    _check_works(sampler, x.to(dtype))
    if dtype == torch.float64:  # float32 values held in float64: the statistics, so the picks, are the same
        # (eval() each time: the random sampler re-seeds its evaluation generator on entering eval mode)
        assert torch.equal(sampler.eval()(x.to(dtype)).indices, sampler.eval()(x).indices)


HUGE = {
    "float32 1e38": (torch.float32, 1e38),
    "bfloat16 1e38": (torch.bfloat16, 1e38),
    "float64 1e300": (torch.float64, 1e300),
    "float32 1e20": (torch.float32, 1e20),
}


@pytest.mark.parametrize("case", list(HUGE))
@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_huge_finite_input_works_or_raises_one_clear_line(name: str, options: dict[str, object], case: str) -> None:
    dtype, scale = HUGE[case]
    unit = torch.rand(3, T, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = (unit * scale).to(dtype)
    assert torch.isfinite(x).all()
    sampler = _build(name, options)
    reference = sampler.eval()(unit).indices
    try:
        _check_works(sampler, x)
    except ValueError as error:
        message = str(error)
        assert "\n" not in message
        assert message.startswith("x has values too large for the sampler's float32 frame statistics (max |x| = ")
        assert "rescale x" in message
        assert name in ("das", "adps")  # only the samplers that compute frame statistics refuse
        return
    if options.get("features") != "learned":  # the other samplers' picks ignore the input's scale
        assert torch.equal(sampler.eval()(x).indices, reference)


@pytest.mark.parametrize(("name", "options"), [("das", {}), ("das", {"features": "learned"}), ("adps", {})])
def test_statistics_check_follows_check_finite(name: str, options: dict[str, object]) -> None:
    """The statistics check is part of ``check_finite``: off, nothing is read on the host (and the
    output is then unchecked); on again, the check is back, also in the features submodule."""
    sampler = _build(name, options).eval()
    x = torch.rand(2, T, 1, 6, 6) * 1e38
    sampler.check_finite = False
    assert sampler.features.check_finite is False
    with torch.no_grad():
        sampler(x)  # no error: unchecked
    sampler.check_finite = True
    assert sampler.features.check_finite is True
    with pytest.raises(ValueError, match="too large"):
        sampler(x)
