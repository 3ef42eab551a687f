"""Every sampler behind the one interface: shapes, exact selections, gradients, adaptivity, errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from das.samplers import SAMPLERS, ADPSSampler, DASSampler, DPSSampler, Sampler, make_sampler
from das.samplers.features import FIXED_FEATURES
from das.train import score_function_term

LEARNABLE = ("das", "dps", "adps")
NAMES = ("full", "uniform", "random", *LEARNABLE)
# (B, T, k, C, H, W): k = 1, k = T, odd sizes, frames smaller than the 3x3 edge kernels, colour.
SHAPES = [(2, 6, 3, 1, 8, 8), (1, 5, 1, 1, 4, 7), (3, 4, 4, 3, 2, 2), (4, 9, 9, 2, 5, 3)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny ops run 10-100x slower with several OpenMP threads on a loaded machine; restore after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def _build(name: str, num_frames: int, k: int, **options: object) -> Sampler:
    return make_sampler(name, num_frames, None if name == "full" else k, **options)  # type: ignore[arg-type]


def _check_selection(sampler: Sampler, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> None:
    selection = sampler(x, generator)
    batch, frames = x.shape[:2]
    assert selection.frames.shape == (batch, k, *x.shape[2:])
    assert selection.weights.shape == (batch, k, frames)
    assert selection.indices.shape == (batch, k) and selection.indices.dtype == torch.int64
    assert selection.frames.dtype == x.dtype and selection.weights.dtype == x.dtype
    # Rows exactly one-hot at the indices, frames exactly x at the indices, rows in temporal order.
    assert torch.equal(selection.weights.detach(), nn.functional.one_hot(selection.indices, frames).to(x.dtype))
    assert torch.equal(selection.frames.detach(), x[torch.arange(batch)[:, None], selection.indices])
    assert torch.all(selection.indices[:, 1:] >= selection.indices[:, :-1])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_dtypes_one_hot_and_gathered_frames(name: str, shape: tuple[int, ...]) -> None:
    batch, frames, k, *frame = shape
    if name == "full":
        k = frames
    sampler = _build(name, frames, k)
    x = torch.rand(batch, frames, *frame)
    for training in (True, False):
        sampler.train(training)
        _check_selection(sampler, x, k)
        with torch.no_grad():
            _check_selection(sampler, x, k)


@pytest.mark.parametrize(
    ("name", "options"),
    [("das", {}), ("das", {"features": "learned", "position": True}), ("dps", {}), ("adps", {}), ("random", {})],
)
def test_no_frame_chosen_twice_without_replacement(name: str, options: dict[str, object]) -> None:
    frames, k = 6, 5
    sampler = _build(name, frames, k, **options).train()
    x = torch.rand(64, frames, 1, 4, 4)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(20):
            indices = sampler(x, generator).indices
            assert torch.all(indices[:, 1:] > indices[:, :-1]), "a frame was picked twice"


def test_das_with_replacement_can_repeat_in_training_but_not_at_evaluation() -> None:
    sampler = DASSampler(6, 5, replacement=True).train()
    x = torch.rand(64, 6, 1, 4, 4)
    with torch.no_grad():
        indices = sampler(x, torch.Generator().manual_seed(2)).indices
        assert (indices[:, 1:] == indices[:, :-1]).any()
        assert torch.all(sampler.eval()(x).indices.diff(dim=1) > 0)


# Every DAS option combination that adds or activates parameters.
DAS_OPTIONS = [
    {},
    {"features": "learned"},
    {"features": "learned", "base": "variance"},
    {"base": "variance", "adaptive_temperature": False},
    {"replacement": True, "position": True, "heads": 1},
]


@pytest.mark.parametrize(
    ("name", "options"),
    [*(("das", options) for options in DAS_OPTIONS), ("dps", {}), ("adps", {}), ("adps", {"position": False})],
)
def test_gradients_reach_every_parameter(name: str, options: dict[str, object]) -> None:
    sampler = _build(name, 8, 3, **options).train()
    x = torch.rand(4, 8, 1, 6, 6)
    selection = sampler(x, torch.Generator().manual_seed(3))
    target = torch.rand_like(selection.frames)
    ((selection.frames - target) ** 2).mean().backward()
    parameters = dict(sampler.named_parameters())
    assert parameters
    for parameter_name, parameter in parameters.items():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient for {parameter_name}"


def _edge_volumes(positions: list[int], frames: int = 10, size: int = 12) -> torch.Tensor:
    """Synthetic volumes: flat grey frames plus one striped (high-edge) frame per input."""
    x = torch.full((len(positions), frames, 1, size, size), 0.5)
    stripes = ((torch.arange(size) // 2) % 2).float().expand(size, -1)
    for b, t in enumerate(positions):
        x[b, t, 0] = stripes
    return x + 0.01 * torch.rand(x.shape, generator=torch.Generator().manual_seed(4))


def _edge_preferring_das(frames: int, k: int) -> DASSampler:
    """A DAS whose base MLP is set by hand to add a frame's (standardised) Sobel feature to its
    variance score (the striped frame stands out in both)."""
    sampler = DASSampler(frames, k, hidden=4)
    first, second = sampler.base_mlp[0], sampler.base_mlp[2]
    with torch.no_grad():
        first.weight.zero_()
        first.bias.fill_(10.0)  # keep the ReLU open: a_base = z(var) + sobel + 10
        first.weight[0, FIXED_FEATURES.index("sobel")] = 1.0
        second.weight.zero_()
        second.weight[0, 0] = 1.0
    return sampler


def test_input_adaptivity_at_evaluation() -> None:
    x = _edge_volumes([2, 7])
    dps = DPSSampler(10, 1).eval()
    with torch.no_grad():
        dps_indices = dps(x).indices
    assert torch.equal(dps_indices[0], dps_indices[1])
    for das in (_edge_preferring_das(10, 1), DASSampler(10, 1, base="variance")):
        with torch.no_grad():
            assert das.eval()(x).indices[:, 0].tolist() == [2, 7]


CHECKER_FRAMES, CHECKER_SIZE = 8, 6


def checkerboard_volumes(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` noise volumes of 8 frames, one frame at a random position holding a checkerboard whose
    phase is the label: ``(x, labels, position of that frame)``. The checkerboard (0.5 +- 0.1) has the
    noise frames' mean and variance, so DAS's initial base score (the slices' variance) does not point
    to it: it must learn from the edge features."""
    frames, size = CHECKER_FRAMES, CHECKER_SIZE
    checker = ((torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2).float()
    x = 0.5 + 0.1 * torch.randn(count, frames, 1, size, size, generator=generator)
    labels = torch.randint(0, 2, (count,), generator=generator)
    where = torch.randint(0, frames, (count,), generator=generator)
    x[torch.arange(count), where, 0] = 0.5 + 0.2 * (torch.where(labels[:, None, None] == 1, checker, 1 - checker) - 0.5)
    return x, labels, where


def test_das_learns_to_pick_the_informative_frame() -> None:
    """Short end-to-end training on synthetic volumes: the label is the phase of a checkerboard in
    one frame at a random position; every other frame is noise. A linear classifier on the one
    picked frame can only learn if DAS learns to pick the checkerboard frame."""
    frames, size, batch = CHECKER_FRAMES, CHECKER_SIZE, 32
    generator = torch.Generator().manual_seed(5)

    def hit_rate(sampler: DASSampler) -> float:
        x, _, where = checkerboard_volumes(200, generator)
        with torch.no_grad():
            picked = sampler.eval()(x).indices[:, 0]
        sampler.train()
        return (picked == where).float().mean().item()

    torch.manual_seed(5)
    sampler = DASSampler(frames, 1)
    assert hit_rate(sampler) < 0.5  # this initialisation does not prefer the informative frame
    classifier = nn.Linear(size * size, 2)
    optimiser = torch.optim.Adam([*sampler.parameters(), *classifier.parameters()], lr=1e-2)
    for _ in range(150):
        x, labels, _ = checkerboard_volumes(batch, generator)
        logits = classifier(sampler(x, generator).frames.flatten(1))
        optimiser.zero_grad()
        nn.functional.cross_entropy(logits, labels).backward()
        optimiser.step()
    assert hit_rate(sampler) > 0.95


def test_score_estimator_log_prob_carries_the_gradient_and_frames_do_not() -> None:
    """``estimator="score"``: the same picks as ``"st"`` for one seed; the frames are gathered
    (no gradient); ``log_prob`` is the picks' log-probability and its REINFORCE term reaches the
    base MLP and the heads (the temperature only shapes the relaxation, unused here)."""
    x = torch.rand(4, 8, 1, 6, 6)
    torch.manual_seed(0)
    st = DASSampler(8, 3).train()
    torch.manual_seed(0)
    score = DASSampler(8, 3, estimator="score").train()
    picked_st = st(x, torch.Generator().manual_seed(3))
    selection = score(x, torch.Generator().manual_seed(3))
    assert picked_st.log_prob is None
    assert torch.equal(selection.indices, picked_st.indices)
    assert not selection.frames.requires_grad and selection.log_prob.shape == (4,)
    assert bool((selection.log_prob < 0).all())
    losses = torch.rand(4)
    score_function_term(losses, selection.log_prob).backward()
    for parameter_name, parameter in score.named_parameters():
        if not parameter_name.startswith("temperature_mlp"):
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient for {parameter_name}"
    with torch.no_grad():
        assert score.eval()(x).log_prob is None


def test_score_estimator_learns_to_pick_the_informative_frame() -> None:
    """The constructed task above (checkerboard phase in one of 8 frames, a linear classifier on the
    one picked frame), trained with the score-function estimator and the trainer's REINFORCE term."""
    frames, size, batch = CHECKER_FRAMES, CHECKER_SIZE, 32
    generator = torch.Generator().manual_seed(5)

    torch.manual_seed(5)
    sampler = DASSampler(frames, 1, estimator="score")
    classifier = nn.Linear(size * size, 2)
    optimiser = torch.optim.Adam([*sampler.parameters(), *classifier.parameters()], lr=1e-2)
    for _ in range(150):
        x, labels, _ = checkerboard_volumes(batch, generator)
        selection = sampler.train()(x, generator)
        losses = nn.functional.cross_entropy(classifier(selection.frames.flatten(1)), labels, reduction="none")
        optimiser.zero_grad()
        (losses.mean() + score_function_term(losses, selection.log_prob)).backward()
        optimiser.step()
    x, _, where = checkerboard_volumes(200, generator)
    with torch.no_grad():
        assert (sampler.eval()(x).indices[:, 0] == where).float().mean().item() > 0.95


def test_das_learned_base_starts_at_the_papers_variance_score() -> None:
    """``base="learned"`` is z(variance) plus a learned correction that starts near zero, so an
    untrained DAS keeps the highest-variance slices, as ``base="variance"`` does."""
    x = torch.rand(3, 10, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    x = x * torch.linspace(0.1, 1.0, 10)[torch.randperm(10, generator=torch.Generator().manual_seed(7))].view(
        1, 10, 1, 1, 1
    )
    torch.manual_seed(0)
    learned, literal = DASSampler(10, 4).eval(), DASSampler(10, 4, base="variance").eval()
    with torch.no_grad():
        base, variance = learned.scores(x).base, literal.scores(x).base
        assert (base - variance).abs().max() < 0.05 * variance.abs().max()
        assert torch.equal(learned(x).indices, literal(x).indices)


def test_das_evaluation_is_topk_of_base_scores() -> None:
    sampler = DASSampler(7, 3).eval()
    x = torch.rand(5, 7, 1, 6, 6)
    with torch.no_grad():
        scores = sampler.scores(x)
        expected = scores.base.topk(3, dim=-1).indices.sort(dim=-1).values
        assert torch.equal(sampler(x).indices, expected)
        # The masked row-wise argmax of A = scale * base, computed naively, gives the same frames.
        rows, mask, picks = scores.rows, torch.zeros(5, 7), []
        for j in range(3):
            pick = (rows[:, j] + mask).argmax(-1)
            picks.append(pick)
            mask[torch.arange(5), pick] = float("-inf")
        assert torch.equal(torch.stack(picks, 1).sort(dim=1).values, expected)
    assert scores.scale.shape == (5, 3) and torch.all(scores.scale > 0)
    assert scores.tau.shape == (5,) and torch.all((scores.tau >= 0.5) & (scores.tau <= 1.5))


@pytest.mark.parametrize("name", NAMES)
def test_evaluation_deterministic_and_training_repeats_with_seed(name: str) -> None:
    sampler = _build(name, 12, 12 if name == "full" else 4)
    x = torch.rand(6, 12, 1, 5, 5)
    with torch.no_grad():
        # random re-seeds its private generator on entering eval mode: a whole test pass repeats.
        assert torch.equal(sampler.eval()(x).indices, sampler.eval()(x).indices)
        if name != "random":
            assert torch.equal(sampler(x).indices, sampler(x).indices)
        sampler.train()
        first = sampler(x, torch.Generator().manual_seed(6))
        second = sampler(x, torch.Generator().manual_seed(6))
        assert torch.equal(first.indices, second.indices) and torch.equal(first.weights, second.weights)
        if name in ("random", *LEARNABLE):
            draws = {tuple(sampler(x, torch.Generator().manual_seed(s)).indices.flatten().tolist()) for s in range(5)}
            assert len(draws) > 1, "training draws ignore the generator"


@pytest.mark.parametrize("name", LEARNABLE)
def test_autocast_bfloat16(name: str) -> None:
    sampler = _build(name, 8, 3, **({"features": "learned"} if name == "das" else {}))
    x = torch.rand(2, 8, 1, 6, 6)
    for training in (True, False):
        sampler.train(training)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            selection = sampler(x, torch.Generator().manual_seed(7))
        assert selection.frames.shape == (2, 3, 1, 6, 6)
        assert torch.equal(selection.weights.detach(), nn.functional.one_hot(selection.indices, 8).float())
        if training:
            selection.frames.float().sum().backward()
    assert all(p.grad is not None for p in sampler.parameters())


def test_registry_and_factory() -> None:
    assert {"das", "dps", "adps", "full", "uniform", "random"} <= set(SAMPLERS)
    assert isinstance(make_sampler("adps", 8, 2, hidden=8), ADPSSampler)
    sampler = make_sampler("das", 8, 2, heads=2, tau0=0.5, base="variance", features="learned", position=True)
    assert isinstance(sampler, DASSampler) and sampler.heads == 2 and sampler.tau0 == 0.5


def _bad(match: str):  # noqa: ANN202 (pytest's context manager type is private)
    return pytest.raises(ValueError, match=match)


def test_bad_input_raises_value_error_naming_argument_value_and_valid() -> None:
    sampler = DASSampler(6, 2)
    good = torch.rand(2, 6, 1, 4, 4)
    with _bad(r"x must be 5-D.*\(2, 6, 4, 4\)"):
        sampler(good[:, :, 0])
    with _bad("x must be a torch.Tensor.*list"):
        sampler([1.0])  # type: ignore[arg-type]
    with _bad("num_frames=6"):
        sampler(torch.rand(2, 7, 1, 4, 4))
    with _bad("floating dtype.*torch.uint8"):
        sampler((good * 255).to(torch.uint8))
    for bad_value in (float("nan"), float("inf"), float("-inf")):
        bad = good.clone()
        bad[1, 3, 0, 2, 2] = bad_value
        with _bad("NaN or Inf"):
            sampler(bad)
    for name in NAMES:
        with _bad(r"k must be an int >= 1, got 0"):
            make_sampler(name, 6, 0)
        if name != "full":
            with _bad(r"k=7 must be at most num_frames=6"):
                make_sampler(name, 6, 7)
    with _bad(r"unknown sampler name 'dass'; valid names: adps, das, dps, full, random, uniform"):
        make_sampler("dass", 6, 2)
    with _bad(r"unknown option\(s\) 'head' for sampler 'das'; valid options: heads, tau0"):
        make_sampler("das", 6, 2, head=3)
    with _bad(r"unknown option\(s\) 'heads' for sampler 'dps'; valid options: tau"):
        make_sampler("dps", 6, 2, heads=3)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("das", {"heads": 0}, "heads must be an int >= 1, got 0"),
        ("das", {"heads": 2.5}, "heads must be an int >= 1, got 2.5"),
        ("das", {"hidden": -1}, "hidden must be an int >= 1, got -1"),
        ("das", {"tau0": 0.0}, "tau0 must be a positive finite number, got 0.0"),
        ("das", {"tau0": float("inf")}, "tau0 must be a positive finite number, got inf"),
        ("das", {"base": "foo"}, "base must be one of 'learned', 'variance', got 'foo'"),
        ("das", {"features": "sobel"}, "features must be one of 'fixed', 'learned', got 'sobel'"),
        ("das", {"adaptive_temperature": "yes"}, "adaptive_temperature must be True or False, got 'yes'"),
        ("das", {"replacement": 1}, "replacement must be True or False, got 1"),
        ("das", {"position": None}, "position must be True or False, got None"),
        ("das", {"estimator": "reinforce"}, "estimator must be one of 'st', 'score', got 'reinforce'"),
        ("das", {"fused_features": "yes"}, "fused_features must be True or False, got 'yes'"),
        ("das", {"fused_features": True, "features": "learned"}, "fused_features=True needs features='fixed'"),
        ("dps", {"tau": -1}, "tau must be a positive finite number, got -1"),
        ("adps", {"hidden": 0}, "hidden must be an int >= 1, got 0"),
        ("adps", {"tau": "hot"}, "tau must be a positive finite number, got 'hot'"),
    ],
)
def test_bad_option_values(name: str, options: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        make_sampler(name, 6, 2, **options)


@pytest.mark.parametrize(
    ("name", "options", "modes"),
    [
        ("das", {}, (True, False)),
        ("das", {"estimator": "score"}, (True,)),
        ("das", {"replacement": True}, (True,)),
        ("das", {"base": "variance", "features": "learned"}, (True, False)),
        ("dps", {}, (True, False)),
        ("adps", {}, (True, False)),
        ("uniform", {}, (True, False)),
        ("full", {}, (True, False)),
        # Random evaluation draws from the sampler's own torch.Generator, which dynamo cannot trace.
        ("random", {}, (True,)),
    ],
)
def test_forward_compiles_into_one_graph(name: str, options: dict[str, object], modes: tuple[bool, ...]) -> None:
    """On CPU, what the CUDA test below checks on a GPU: ``fullgraph=True`` fails at anything that
    would read a value on the host (``.item()``, a branch on a tensor's value). Randomness comes from
    the global RNG, as in a compiled training run."""
    sampler = make_sampler(name, 16, 16 if name == "full" else 8, **options)
    sampler.check_finite = False
    x = torch.rand(4, 16, 1, 12, 12)
    for training in modes:
        sampler.train(training)
        torch._dynamo.reset()
        with torch.set_grad_enabled(training):
            selection = torch.compile(sampler, fullgraph=True, backend="eager")(x)
        assert torch.equal(selection.frames.detach(), x[torch.arange(4)[:, None], selection.indices])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["das", "dps", "adps", "random", "uniform"])
def test_cuda_forward_without_host_device_sync(name: str) -> None:
    sampler = make_sampler(name, 16, 8).cuda()
    sampler.check_finite = False  # the one documented synchronising check
    x = torch.rand(4, 16, 1, 28, 28, device="cuda")
    generator = torch.Generator(device="cuda").manual_seed(0)
    for training in (True, False):
        sampler.train(training)
        for autocast in (False, True):
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                    selection = sampler(x, generator if training else None)
            finally:
                torch.cuda.set_sync_debug_mode("default")
            assert selection.frames.shape == (4, 8, 1, 28, 28) and selection.indices.is_cuda
            expected = x[torch.arange(4, device="cuda")[:, None], selection.indices].to(selection.frames.dtype)
            assert torch.equal(selection.frames.detach(), expected)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"fused": "yes"}, "fused must be True, False or None (auto), got 'yes'"),
        ({"fused": 1}, "fused must be True, False or None (auto), got 1"),
        ({"fused": True, "features": "learned"}, "fused=True needs features='fixed'"),
    ],
)
def test_bad_fused_options(options: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        make_sampler("das", 6, 2, **options)


def test_das_evaluation_is_compiled_by_default() -> None:
    """The default DAS (``fused=None``) evaluates through its compiled path on CPU (until compiling
    fails there); ``fused=False`` and the learned features stay eager. The option shows in the repr."""
    sampler = make_sampler("das", 6, 2)
    assert sampler.fused is None and "fused=None" in repr(sampler)
    assert sampler.evaluation_path("cpu") == "compiled"
    assert make_sampler("das", 6, 2, fused=False).evaluation_path("cpu") == "eager"
    assert make_sampler("das", 6, 2, base="variance", features="learned").evaluation_path("cpu") == "eager"
