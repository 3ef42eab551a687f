"""The classifier every method shares: a sampler picks k frames, a 2D backbone embeds each picked frame,
the embeddings are pooled over the k frames and a linear head classifies, as in the paper.

The full-sequence baseline is the same model with the ``full`` sampler, so methods differ only in which
frames reach the backbone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from das.backbone import FrameEncoder
from das.checks import check_choice, check_int
from das.samplers.base import Sampler, Selection
from das.samplers.fused import compile_with_own_cache

BACKBONES: tuple[str, ...] = ("mobilenet_v3_small",)
POOLS: tuple[str, ...] = ("mean", "max")
# BatchNorm momentum of the backbone. torchvision's MobileNetV3 uses 0.01, tuned for long ImageNet
# schedules. Our inputs give activations of variance ~0.01 where the running variance starts at 1:
# with 0.01 the running statistics are still far from the batch statistics after hundreds of steps,
# the signal vanishes layer after layer in eval mode and every input gets the same logits (AUC exactly
# 0.5). We use PyTorch's default 0.1 and start the running statistics from data
# (:meth:`SubsampledClassifier.init_batchnorm`).
BN_MOMENTUM = 0.1


class ClassifierOutput(NamedTuple):
    """``logits [B, num_classes]`` and the sampler's :class:`Selection` (what was chosen, per input).

    A named tuple, so ``logits, selection = model(x)`` works.
    """

    logits: Tensor
    selection: Selection


class SubsampledClassifier(nn.Module):
    """``x [B, T, C, H, W]`` -> logits, seeing only the ``sampler.k`` frames the sampler picks.

    The ``B * k`` picked frames go through the backbone in one batched ``channels_last`` call; ``pool``
    (``"mean"`` or ``"max"``) reduces the k embeddings of an input to one vector for the linear head.
    """

    def __init__(
        self,
        sampler: Sampler,
        num_classes: int,
        in_channels: int,
        backbone: str = "mobilenet_v3_small",
        pool: str = "mean",
    ) -> None:
        super().__init__()
        if not isinstance(sampler, Sampler):
            raise ValueError(f"sampler must be a das.samplers.Sampler, got {type(sampler).__name__}")
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; valid backbones: {', '.join(BACKBONES)}")
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; valid pools: {', '.join(POOLS)}")
        self.sampler = sampler
        self.encoder = FrameEncoder(in_channels)
        for module in self.encoder.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = BN_MOMENTUM
        self.head = nn.Linear(self.encoder.out_features, num_classes)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.backbone = backbone
        self.pool = pool

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> ClassifierOutput:
        """Classify ``x``; ``generator`` drives the sampler's randomness (random picks, Gumbel noise)."""
        selection = self.sampler(x, generator)
        frames = selection.frames
        batch, k = frames.shape[:2]
        embeddings = self.encoder(frames.flatten(0, 1)).view(batch, k, -1)
        pooled = embeddings.mean(dim=1) if self.pool == "mean" else embeddings.amax(dim=1)
        return ClassifierOutput(self.head(pooled), selection)

    @torch.no_grad()
    def init_batchnorm(self, x: Tensor, generator: torch.Generator | None = None) -> None:
        """Set the backbone's BatchNorm running statistics to those of the frames picked from ``x``
        (one forward pass in training mode, momentum 1), instead of their (0, 1) initial values."""
        norms = [m for m in self.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        was_training = self.training
        self.train()
        for norm in norms:
            norm.momentum = 1.0
        try:
            self(x, generator)
        finally:
            for norm in norms:
                norm.momentum = BN_MOMENTUM
            self.train(was_training)

    def compiled_for_inference(self, mode: str = "default") -> Callable[[Tensor], ClassifierOutput]:
        """The model as a ``torch.compile``'d callable ``x -> ClassifierOutput`` for inference: it
        switches the module to eval mode and runs it under ``torch.no_grad()``. With
        ``sampler.check_finite`` off nothing reads values on the host, so the model is one graph.

        ``mode``: one of :data:`das.config.COMPILE_MODES`. On a GPU ``"reduce-overhead"`` replays
        CUDA graphs (kernel launches recorded once per input shape): a call's outputs then live in
        memory that the next call overwrites, so clone what you keep; on a CPU it compiles as
        ``"default"``. The sampler's evaluation (DAS's) is traced as part of the model. Compiles on
        the first call of each input shape.
        """
        from das.config import COMPILE_MODES  # das.config imports this module

        check_choice("mode", mode, COMPILE_MODES)
        self.eval()
        # A cache of its own: many models compiled in one process (the benchmark) never share one.
        compiled = compile_with_own_cache(_classify, mode=mode)

        def infer(x: Tensor) -> ClassifierOutput:
            with torch.no_grad():
                return compiled(self, x)

        return infer

    def extra_repr(self) -> str:
        return f"backbone={self.backbone!r}, pool={self.pool!r}, num_classes={self.num_classes}"


def _classify(model: SubsampledClassifier, x: Tensor) -> ClassifierOutput:
    """``model(x)``: the function :meth:`SubsampledClassifier.compiled_for_inference` compiles."""
    return model(x)
