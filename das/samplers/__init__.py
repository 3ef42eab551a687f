"""Frame/slice samplers behind one interface, the registry of their names, and the factory.

:data:`SAMPLERS` is the one list of methods: every other list of method names in the package (the
profiles, the results tables, the benchmark) comes from it, in its order (baselines first, then the
learnable samplers, ours last).

>>> import torch
>>> sampler = make_sampler("das", num_frames=28, k=14, heads=4)
>>> x = torch.rand(8, 28, 1, 64, 64)  # [B, T, C, H, W]
>>> selection = sampler.eval()(x)
>>> tuple(selection.frames.shape), tuple(selection.indices.shape), tuple(selection.weights.shape)
((8, 14, 1, 64, 64), (8, 14), (8, 14, 28))
"""

from __future__ import annotations

import inspect

from das.samplers.adps import ADPSSampler
from das.samplers.base import Sampler, Selection
from das.samplers.baselines import FullSampler, RandomSampler, UniformSampler
from das.samplers.das_sampler import DASSampler
from das.samplers.dps import DPSSampler

SAMPLERS: dict[str, type[Sampler]] = {
    "full": FullSampler,
    "random": RandomSampler,
    "uniform": UniformSampler,
    "dps": DPSSampler,
    "adps": ADPSSampler,
    "das": DASSampler,
}
METHODS: tuple[str, ...] = tuple(SAMPLERS)  # the method names, in display order


def make_sampler(name: str, num_frames: int, k: int, **options: object) -> Sampler:
    """Build the sampler called ``name`` choosing ``k`` of ``num_frames`` frames.

    ``options`` are the sampler's keyword arguments (e.g. ``heads``, ``tau0`` for ``das``); an
    unknown name or option raises ``ValueError`` listing the valid ones.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler name {name!r}; valid names: {', '.join(sorted(SAMPLERS))}")
    cls = SAMPLERS[name]
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "num_frames", "k")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for sampler {name!r}; "
            f"valid options: {', '.join(valid) or '(none)'}"
        )
    return cls(num_frames, k, **options)


__all__ = [
    "METHODS",
    "SAMPLERS",
    "ADPSSampler",
    "DASSampler",
    "DPSSampler",
    "FullSampler",
    "RandomSampler",
    "Sampler",
    "Selection",
    "UniformSampler",
    "make_sampler",
]
