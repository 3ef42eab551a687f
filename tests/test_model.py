"""SubsampledClassifier: shapes, one batched backbone call on B*k frames, pooling, validation, gradients."""

from __future__ import annotations

import pytest
import torch

from das.model import ClassifierOutput, SubsampledClassifier
from das.samplers import make_sampler

B, T, C, S = 3, 8, 1, 16


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(B, T, C, S, S, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method,k", [("full", T), ("uniform", 4), ("das", 4)])
def test_output_shapes_and_selection(method: str, k: int, x: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = SubsampledClassifier(make_sampler(method, T, k), num_classes=5, in_channels=C).eval()
    out = model(x)
    assert isinstance(out, ClassifierOutput)
    logits, selection = out  # unpacks like a tuple
    assert logits.shape == (B, 5)
    assert selection.frames.shape == (B, k, C, S, S)
    assert selection.indices.shape == (B, k)
    # The selected frames are the input frames at the chosen indices.
    for b in range(B):
        torch.testing.assert_close(selection.frames[b], x[b, selection.indices[b]])


def test_backbone_sees_b_times_k_frames_in_one_channels_last_call(x: torch.Tensor) -> None:
    model = SubsampledClassifier(make_sampler("uniform", T, 3), num_classes=2, in_channels=C).eval()
    calls = []
    model.encoder.register_forward_hook(lambda module, args, output: calls.append((args[0].shape, output.shape)))
    model(x)
    assert calls == [((B * 3, C, S, S), (B * 3, model.encoder.out_features))]


def test_pool_mean_and_max_differ_and_match_manual_pooling(x: torch.Tensor) -> None:
    torch.manual_seed(0)
    mean_model = SubsampledClassifier(make_sampler("uniform", T, 4), 2, C, pool="mean").eval()
    max_model = SubsampledClassifier(make_sampler("uniform", T, 4), 2, C, pool="max").eval()
    max_model.load_state_dict(mean_model.state_dict())
    with torch.no_grad():
        selection = mean_model.sampler(x)
        emb = mean_model.encoder(selection.frames.flatten(0, 1)).view(B, 4, -1)
        torch.testing.assert_close(mean_model(x).logits, mean_model.head(emb.mean(1)))
        torch.testing.assert_close(max_model(x).logits, mean_model.head(emb.amax(1)))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"backbone": "resnet50"}, "unknown backbone 'resnet50'"),
        ({"pool": "attention"}, "unknown pool 'attention'"),
        ({"num_classes": 0}, "num_classes"),
        ({"in_channels": -1}, "in_channels"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict, message: str) -> None:
    args = {"num_classes": 2, "in_channels": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        SubsampledClassifier(make_sampler("uniform", T, 4), **args)


def test_rejects_a_non_sampler() -> None:
    with pytest.raises(ValueError, match="sampler must be a das.samplers.Sampler"):
        SubsampledClassifier(torch.nn.Identity(), 2, 1)  # type: ignore[arg-type]


def test_gradient_reaches_the_learnable_sampler(x: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = SubsampledClassifier(make_sampler("das", T, 4), num_classes=2, in_channels=C).train()
    logits, _ = model(x, torch.Generator().manual_seed(0))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 0])).backward()
    grads = [p.grad for p in model.sampler.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)
