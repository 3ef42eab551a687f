"""DAS: Deep Attention-guided Adaptive Subsampling (Shankaranarayana et al., arXiv 2510.12376).

One light, single-pass module looks at cheap features of every frame and picks k of the T frames of
each input, trained end to end with the classifier; input-adaptive at inference. Shapes (B inputs,
T frames, k picks, d features, H heads)::

    x        [B, T, C, H, W]
    F        [B, T, d]      cheap per-frame features, standardised over T   (features.py)
    a_base   [B, T]         z(var) + MLP_base(F) per frame, the MLP's output layer near zero at the
                            start (base="learned"), or z(var) alone (base="variance")
    pooled   [B, 3 d0]      mean, max and std over T of the d0 unstandardised features
    s_h      [B, k]         Softplus(MLP_h(pooled)) for head h = 1..H
    A        [B, k, T]      A[:, j, :] = mean_h a_base * s_h[:, j]
    tau      [B]            tau0 * (0.5 + sigmoid(MLP_temp(pooled))), or tau0
    training P[:, j, :] = straight-through(one_hot(argmax_t(A_j + G_j + M_j)),
                                           softmax_t((A_j + G_j + M_j) / tau))
             G_j ~ Gumbel(0, 1); M_j = -inf at the frames picked by rows < j (without replacement)
    eval     indices = top-k of a_base (no noise); P = one-hot rows
    output   rows in temporal order; frames = P @ x (training) or a gather by index (evaluation)

Our decisions where the paper is silent or inconsistent (the DAS-module chapter of the book derives
each one; the ablations chapter measures the alternatives on real and synthetic data):

* Without replacement (``replacement=False``): every row of A is a positive multiple of the same
  ``a_base``, so independent rows would share one argmax; row j masks the frames rows < j took.
* The H heads collapse into one positive scale per row, that row's inverse temperature; a scale
  never changes the order of the frames, so evaluation (no noise) is ``topk(a_base, k)``.
* ``a_base`` starts at the paper's variance score and learns a correction (``base="learned"``).
* The pooled summary reads the features before standardisation (after it, their mean and std over
  T are the constants 0 and 1).
* Gradient estimator: ``estimator="st"`` is the paper's straight-through Gumbel-softmax gradient;
  ``estimator="score"`` (what the profiles train with) draws the same picks and returns the
  log-probability of the ordered picks, for the trainer's score-function term
  (:func:`das.train.score_function_term`), unbiased however non-linear the backbone. ``tau`` and its
  MLP only shape the relaxation, so they play no part with it.

The forward pass reads no tensor value on the host (apart from the optional finite checks), so
``torch.compile`` and CUDA graphs can capture it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import torch
from torch import Tensor, nn

from das.checks import check_bool, check_choice, check_int, check_positive_float
from das.samplers import fused as fused_path
from das.samplers.base import Sampler, Selection, check_statistics, hard_selection
from das.samplers.features import (
    FEATURE_KINDS,
    FrameFeatures,
    append_position,
    frame_variance,
    raw_fixed_features,
    standardise_over_frames,
)
from das.samplers.gumbel import gumbel_topk, plackett_luce_log_prob, temporal_selection, topk_indices

BASES = ("learned", "variance")
ESTIMATORS = ("st", "score")
BASE_INIT_SCALE = 0.01  # MLP_base's output layer at 1% of nn.Linear's initial range (see _base)
_TEMPERATURE_HIDDEN = 16


class DASScores(NamedTuple):
    """The quantities DAS samples from, for inspection: ``base [B, T]``, ``scale [B, k]``, ``tau [B]``."""

    base: Tensor
    scale: Tensor
    tau: Tensor

    @property
    def rows(self) -> Tensor:
        """``A [B, k, T] = scale[:, :, None] * base[:, None, :]``."""
        return self.scale.unsqueeze(-1) * self.base.unsqueeze(1)


def base_score(variance: Tensor, features: Tensor, base_mlp: nn.Module | None) -> Tensor:
    """``a_base [B, T]``: the standardised frame variance ``[B, T]``, plus ``MLP_base(F)`` when learned."""
    base = standardise_over_frames(variance.unsqueeze(-1)).squeeze(-1)
    if base_mlp is None:
        return base
    return base + base_mlp(features).squeeze(-1).float()


def fixed_evaluation(
    x: Tensor, k: int, position: bool, base_mlp: nn.Module | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """DAS's evaluation with fixed features as one pure function, the one :mod:`das.samplers.fused`
    compiles: ``x [B, T, C, H, W]`` -> ``(indices [B, k] in temporal order, raw features [B, T, 5],
    standardised features [B, T, 5], a_base [B, T])``; the same code as the eager path, op for op."""
    raw = raw_fixed_features(x)
    standardised = standardise_over_frames(raw)
    features = append_position(standardised) if position else standardised
    base = base_score(raw[..., 0], features, base_mlp)
    return topk_indices(base, k), raw, standardised, base


class DASSampler(Sampler):
    """Input-adaptive DAS sampler; see the module docstring for the method and our decisions.

    Options: ``heads`` (H >= 1), ``tau0`` (> 0), ``adaptive_temperature``, ``base`` (``"learned"`` or
    ``"variance"``), ``replacement``, ``features`` (``"fixed"`` or ``"learned"``), ``hidden`` (width
    of MLP_base and of each MLP_h), ``position`` (append t/(T-1) to the features), ``estimator``
    (``"st"``, the paper's straight-through gradient, or ``"score"``, the score-function estimator
    whose ``Selection.log_prob`` the trainer turns into a REINFORCE term; see the module docstring).

    ``fused`` (evaluation only): run features, base score and top-k as one ``torch.compile``'d
    function (:func:`fixed_evaluation` through :mod:`das.samplers.fused`; the gather stays eager).
    ``None`` (default) compiles on CPU and CUDA when the features are fixed; ``True`` insists on
    fixed features; ``False`` stays eager. Compiled once per frame shape and k for batch 1 and
    once for all larger batches, from the third evaluation call of that shape (the first two run eager; compiling takes
    seconds and needs a C++ compiler on CPU, Triton on CUDA). Where compiling fails the sampler
    evaluates eagerly, with one ``CompileUnavailableWarning`` per process. The picks are the eager
    path's: the compiled scores may differ in float32's last bits, which could only swap frames whose
    scores are that close (none on random batches or on AdrenalMNIST3D's test split, see the tests).
    Training, FLOP counting (``FlopCounterMode``) and an enclosing ``torch.compile`` always run the
    eager code.

    ``fused_features``: compute the fixed features inside their operator with compiled kernels, in
    training too (:func:`das.samplers.features.fixed_features`).
    """

    def __init__(
        self,
        num_frames: int,
        k: int,
        heads: int = 4,
        tau0: float = 1.0,
        adaptive_temperature: bool = True,
        base: str = "learned",
        replacement: bool = False,
        features: str = "fixed",
        hidden: int = 32,
        position: bool = False,
        estimator: str = "st",
        fused: bool | None = None,
        fused_features: bool = False,
    ) -> None:
        super().__init__(num_frames, k)
        self.heads = check_int("heads", heads)
        self.tau0 = check_positive_float("tau0", tau0)
        self.adaptive_temperature = check_bool("adaptive_temperature", adaptive_temperature)
        self.base = check_choice("base", base, BASES)
        self.replacement = check_bool("replacement", replacement)
        self.estimator = check_choice("estimator", estimator, ESTIMATORS)
        check_choice("features", features, FEATURE_KINDS)
        hidden = check_int("hidden", hidden)
        if not (fused is None or isinstance(fused, bool)):
            raise ValueError(f"fused must be True, False or None (auto), got {fused!r}")
        if fused and features != "fixed":
            raise ValueError(f"fused=True needs features='fixed' (it compiles the fixed features), got {features!r}")
        self.fused = fused

        self.features = FrameFeatures(features, position, fused=fused_features)
        pooled = 3 * self.features.raw_dim
        self.base_mlp = (
            # No output bias: a constant added to every frame's score changes no softmax and no top-k.
            nn.Sequential(nn.Linear(self.features.out_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1, bias=False))
            if base == "learned"
            else None
        )
        if self.base_mlp is not None:
            # a_base starts close to the paper's variance score: a small output layer, not a zero one,
            # so that every parameter gets a gradient from the first step.
            with torch.no_grad():
                self.base_mlp[-1].weight.mul_(BASE_INIT_SCALE)
        # The H head MLPs: their first layers side by side in one Linear, their second layers as a
        # batched [H, hidden, k] weight (one einsum), so the heads cost one kernel each layer.
        self.head_hidden = nn.Linear(pooled, self.heads * hidden)
        self.head_weight = nn.Parameter(torch.empty(self.heads, hidden, k))
        self.head_bias = nn.Parameter(torch.zeros(self.heads, k))
        nn.init.uniform_(self.head_weight, -(hidden**-0.5), hidden**-0.5)  # nn.Linear's default range
        self.temperature_mlp = (
            nn.Sequential(nn.Linear(pooled, _TEMPERATURE_HIDDEN), nn.ReLU(), nn.Linear(_TEMPERATURE_HIDDEN, 1))
            if adaptive_temperature
            else None
        )

    def scores(self, x: Tensor) -> DASScores:
        """Base scores, per-row scales (heads averaged) and temperature for a valid batch ``x``."""
        features, raw = self.features(x)
        return DASScores(self._base(x, features, raw), *self._modulation(raw))

    def _base(self, x: Tensor, features: Tensor, raw: Tensor) -> Tensor:
        # The paper's base: standardised frame variance (feature 0 when features are fixed), plus the
        # learned correction when base="learned".
        variance = raw[..., 0] if self.features.cnn is None else frame_variance(x)
        return base_score(variance, features, self.base_mlp)

    def evaluation_path(self, device: torch.device | str) -> str:
        """``"compiled"`` or ``"eager"``: how evaluation runs on ``device`` now (outside tracing and
        FLOP counting), given ``fused``, the features and whether compiling has failed there."""
        fusable = self.fused is not False and self.features.cnn is None
        return "compiled" if fusable and fused_path.compile_available(torch.device(device)) else "eager"

    def _evaluation_indices(self, x: Tensor) -> Tensor:
        """Evaluation picks ``[B, k]``: top-k of ``a_base`` (heads and temperature only shape training)."""
        if not fused_path.eager_required() and self.evaluation_path(x.device) == "compiled":
            key = (tuple(x.shape[1:]), self.k, self.features.position, self.base_mlp is None)
            out = fused_path.run_compiled(fixed_evaluation, key, x, self.k, self.features.position, self.base_mlp)
            if out is not None:
                indices, raw, standardised, base = out
                if self.check_finite:  # the same checks, in the same order, as the eager path
                    check_statistics(x, {"frame features": raw, "standardised frame features": standardised})
                    check_statistics(x, {"base scores": base})
                return indices
        features, raw = self.features(x)
        base = self._base(x, features, raw)
        if self.check_finite:  # the variance in the base overflows first (learned features)
            check_statistics(x, {"base scores": base})
        return topk_indices(base, self.k)

    def _modulation(self, raw: Tensor) -> tuple[Tensor, Tensor]:
        """Per-row scales ``[B, k]`` (mean over heads) and temperatures ``[B]`` from the pooled summary."""
        pooled = torch.cat([raw.mean(dim=1), raw.amax(dim=1), raw.std(dim=1, unbiased=False)], dim=-1)
        hidden = torch.relu(self.head_hidden(pooled)).view(raw.shape[0], self.heads, -1)
        head_scales = nn.functional.softplus(torch.einsum("bhc,hck->bhk", hidden, self.head_weight) + self.head_bias)
        scale = head_scales.float().mean(dim=1)
        if self.temperature_mlp is None:
            tau = torch.full((raw.shape[0],), self.tau0, device=raw.device)
        else:
            tau = self.tau0 * (0.5 + torch.sigmoid(self.temperature_mlp(pooled).squeeze(-1).float()))
        return scale, tau

    def select(self, x: Tensor, generator: torch.Generator | None) -> Selection:
        if not self.training:
            # Heads and temperature only shape the training distribution: evaluation skips them.
            return hard_selection(x, self._evaluation_indices(x), self.num_frames)
        features, raw = self.features(x)
        base = self._base(x, features, raw)
        scores = DASScores(base, *self._modulation(raw))
        if self.check_finite:
            check_statistics(x, {"base scores": base, "row scales": scores.scale, "temperatures": scores.tau})
        weights, indices = gumbel_topk(
            scores.rows, self.k, scores.tau.view(-1, 1, 1), generator, replacement=self.replacement
        )
        if self.estimator == "st":
            return temporal_selection(x, weights, indices)
        # Score-function estimator: the same hard draw, no gradient through the frames (a gather),
        # the gradient reaches the sampler through the log-probability of the ordered picks.
        log_prob = plackett_luce_log_prob(scores.rows, indices, replacement=self.replacement)
        return replace(temporal_selection(x, weights.detach(), indices), log_prob=log_prob)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, heads={self.heads}, tau0={self.tau0}, "
            f"adaptive_temperature={self.adaptive_temperature}, base={self.base!r}, replacement={self.replacement}, "
            f"estimator={self.estimator!r}, fused={self.fused}"
        )
