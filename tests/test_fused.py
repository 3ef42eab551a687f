"""DAS's compiled evaluation path: the same picks as the eager path, one compilation per frame shape
for every batch size, eager code under FLOP counting and whole-model compilation, and an eager
fallback with one warning when compiling fails."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from das.data import load_dataset
from das.flops import sampler_cost
from das.model import SubsampledClassifier
from das.samplers import DASSampler, make_sampler
from das.samplers import fused as fused_path
from das.samplers.features import fixed_features_flops
from das.train import evaluate


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pair(num_frames: int, k: int, **options: object) -> tuple[DASSampler, DASSampler]:
    """A default (compiling) DAS and an eager one with the same weights, both in eval mode."""
    torch.manual_seed(0)
    compiled = make_sampler("das", num_frames, k, **options).eval()
    eager = make_sampler("das", num_frames, k, fused=False, **options).eval()
    eager.load_state_dict(compiled.state_dict())
    return compiled, eager  # type: ignore[return-value]


# One small frame shape and k shared by most tests, so that the module compiles few functions.
T, K, SHAPE = 12, 4, (12, 1, 10, 10)


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


@pytest.fixture
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """No compiled functions, failures or warnings yet in this process, as far as fused knows."""
    for name, value in (("_calls", {}), ("_compiled", {}), ("_unavailable", {}), ("_warned", False)):
        monkeypatch.setattr(fused_path, name, value)


@torch.no_grad()
def _warm(sampler: DASSampler, x: torch.Tensor) -> None:
    """Call the sampler until its compiled path has been built (the first calls of a key run eager)."""
    for _ in range(fused_path.COMPILE_AFTER + 1):
        sampler(x)


@pytest.mark.parametrize(
    ("shape", "k", "options"),
    [
        ((16, 28, 1, 28, 28), 14, {}),  # AdrenalMNIST3D's shape
        ((3, 9, 3, 2, 5), 5, {"position": True}),  # colour frames under 3x3 (padded), the position column
        ((4, *SHAPE), K, {"base": "variance"}),  # no MLP_base
    ],
)
def test_compiled_picks_equal_the_eager_picks_on_random_batches(
    shape: tuple[int, ...], k: int, options: dict[str, object]
) -> None:
    compiled, eager = _pair(shape[1], k, **options)
    generator = torch.Generator().manual_seed(1)
    _warm(compiled, torch.rand(shape, generator=generator))
    assert compiled.evaluation_path("cpu") == "compiled"
    before = _graphs()
    for batch in (shape[0], 2 * shape[0] + 1, 2):
        x = torch.rand(batch, *shape[1:], generator=generator)
        with torch.no_grad():
            got, expected = compiled(x), eager(x)
        assert torch.equal(got.indices, expected.indices), batch
        assert torch.equal(got.frames, expected.frames) and torch.equal(got.weights, expected.weights)
    assert _graphs() == before  # the other batch sizes ran the same compiled function
    x = torch.rand(1, *shape[1:], generator=generator)  # batch 1: a graph of its own, the same picks
    with torch.no_grad():
        assert torch.equal(compiled(x).indices, eager(x).indices)


@pytest.mark.usefixtures("fresh_state")
def test_two_compilations_per_frame_shape_one_for_batch_1_one_for_16_and_64() -> None:
    sampler = make_sampler("das", T, K).eval()
    before = _graphs()
    with torch.no_grad():
        for batch in (16, 16, 16, 64, 5, 2):
            sampler(torch.rand(batch, *SHAPE))
        assert _graphs() == before + 1
        for batch in (1, 16, 1, 64):
            sampler(torch.rand(batch, *SHAPE))
    assert _graphs() == before + 2
    assert len(fused_path._compiled) == 1


def test_compiled_picks_equal_the_eager_picks_on_adrenalmnist3d(medmnist_dir: Path) -> None:
    """Every volume of the real test split, with the sampler as initialised (a_base close to the
    standardised variance) and with its MLP_base at full strength (as after training)."""
    dataset = load_dataset("adrenalmnist3d", "test", root=medmnist_dir)
    x = dataset.images.float() / 255
    for scale in (1.0, 100.0):
        compiled, eager = _pair(dataset.num_frames, dataset.num_frames // 2)
        with torch.no_grad():
            compiled.base_mlp[-1].weight.mul_(scale)
            eager.base_mlp[-1].weight.mul_(scale)
            _warm(compiled, x[:16])
            for start in range(0, len(x), 64):
                batch = x[start : start + 64]
                assert torch.equal(compiled(batch).indices, eager(batch).indices), (scale, start)


def test_validation_numbers_are_the_eager_ones() -> None:
    """The trainer's evaluation (three batches: two eager, then compiled) gives bit-identical outputs."""
    dataset = load_dataset("synthetic", "val", num_samples=40, num_frames=T, size=SHAPE[-1])
    outputs = []
    for fused in (None, False):
        torch.manual_seed(0)
        sampler = make_sampler("das", T, K, fused=fused)
        outputs.append(evaluate(SubsampledClassifier(sampler, dataset.num_classes, in_channels=1), dataset))
    compiled, eager = outputs
    assert np.array_equal(compiled.indices, eager.indices) and np.array_equal(compiled.probs, eager.probs)
    assert compiled.loss == eager.loss


def test_flop_counting_runs_the_eager_operator() -> None:
    compiled, eager = _pair(T, K)
    _warm(compiled, torch.rand(2, *SHAPE))
    flops, params = sampler_cost(compiled, (2, *SHAPE))
    assert (flops, params) == sampler_cost(eager, (2, *SHAPE))
    assert flops > fixed_features_flops((2, *SHAPE))  # the features' formula, plus MLP_base


def test_training_runs_eager_and_whole_model_compilation_still_traces() -> None:
    sampler, eager = _pair(T, K)
    sampler.check_finite = False
    x = torch.rand(4, *SHAPE)
    calls = dict(fused_path._calls)
    sampler.train()(x, torch.Generator().manual_seed(0))  # training never reaches the compiled path
    assert fused_path._calls == calls
    sampler.eval()
    _warm(sampler, x)
    torch._dynamo.reset()
    with torch.no_grad():  # fullgraph: the compiled path must not be called from inside the trace
        selection = torch.compile(sampler, fullgraph=True, backend="eager")(x)
        assert torch.equal(selection.indices, eager(x).indices)


@pytest.mark.usefixtures("fresh_state")
def test_a_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_compile(fn: object) -> object:
        def fail(*_: object) -> None:
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

        return fail

    monkeypatch.setattr(fused_path, "_compile", broken_compile)
    x = torch.rand(5, *SHAPE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two samplers, several calls each: one warning in all
            compiled, eager = _pair(T, K)
            with torch.no_grad():
                for _ in range(fused_path.COMPILE_AFTER + 2):
                    assert torch.equal(compiled(x).indices, eager(x).indices)
    messages = [str(w.message) for w in caught if issubclass(w.category, fused_path.CompileUnavailableWarning)]
    assert len(messages) == 1 and "cpu" in messages[0] and "No working C++ compiler" in messages[0]
    assert compiled.evaluation_path("cpu") == "eager"


@pytest.mark.usefixtures("fresh_state")
def test_cuda_without_triton_is_refused_with_the_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.utils._triton

    monkeypatch.setattr(torch.utils._triton, "has_triton", lambda: False)
    with pytest.warns(fused_path.CompileUnavailableWarning, match="cuda.*Triton"):
        assert not fused_path.compile_available(torch.device("cuda"))
    assert make_sampler("das", 8, 2).evaluation_path("cuda") == "eager"


def test_learned_features_and_fused_false_stay_eager() -> None:
    assert make_sampler("das", 8, 2, features="learned").evaluation_path("cpu") == "eager"
    assert make_sampler("das", 8, 2, fused=False).evaluation_path("cpu") == "eager"
    assert make_sampler("das", 8, 2).evaluation_path("meta") == "eager"  # only CPU and CUDA compile
