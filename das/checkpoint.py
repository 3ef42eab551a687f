"""Checkpoints of a run in progress: written atomically after every epoch, read back to resume.

A checkpoint holds the model, the optimiser, the history, the best weights, the RNG states, the
:func:`das.provenance.training_digest` of the code that wrote it, its device type and CPU thread
count. :func:`train` resumes from one only if the run's settings match (:func:`resume_differences`)
and the code, device type and thread count are the same, so a resumed run has the numbers of an
uninterrupted one. A file that cannot be read is set aside,
never trusted.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from das.config import RESUMABLE_CHANGES, TrainConfig, resolve_device
from das.provenance import training_digest


def resume_differences(config: TrainConfig, stored: dict[str, Any], epochs_done: int) -> list[str]:
    """Why a checkpoint of the config dict ``stored``, holding ``epochs_done`` epochs, cannot continue
    as ``config``: the fields that differ, outside :data:`RESUMABLE_CHANGES`. ``epochs`` may change
    only under a constant learning rate (a schedule depends on it) and never below the epochs done
    (the run would be labelled shorter than it is)."""
    differ = config.differences(stored, RESUMABLE_CHANGES)
    if (
        "epochs" not in differ
        and stored.get("epochs") != config.epochs
        and (config.lr_schedule != "constant" or epochs_done > config.epochs)
    ):
        differ = sorted([*differ, "epochs"])
    return differ


class DamagedCheckpointWarning(UserWarning):
    """A checkpoint could not be read; it was set aside (renamed ``*.damaged``) and the run starts over."""


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or ``None`` when there is none. A file that cannot be read as a
    checkpoint (truncated, garbled) is renamed to ``<name>.damaged`` with a
    :class:`DamagedCheckpointWarning` naming it, and ``None`` is returned: the run starts over."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or not {"config", "epoch", "model", "optimizer"} <= set(state):
            raise ValueError("not a training checkpoint")
    except Exception as error:  # noqa: BLE001 -- any unreadable file is set aside, not trusted
        aside = path.with_name(path.name + ".damaged")
        path.replace(aside)
        warnings.warn(
            f"checkpoint {path} is damaged ({type(error).__name__}: {str(error)[:200]}); moved to "
            f"{aside} and the run starts over",
            DamagedCheckpointWarning,
            stacklevel=2,
        )
        return None
    return state


def _checkpoint_differences(state: dict[str, Any], config: TrainConfig) -> list[str]:
    differ = resume_differences(config, state["config"], state["epoch"])
    if state.get("training_digest") != training_digest():
        differ.append("training code")
    device = resolve_device(config.device).type
    if state.get("device_type") != device:
        differ.append("device")  # another RNG and other float rounding: the run starts over
    elif device == "cpu" and state.get("threads") != (config.num_threads or torch.get_num_threads()):
        differ.append("CPU threads")  # other float sums
    return differ


def checkpoint_differences(path: Path, config: TrainConfig) -> list[str]:
    """Why the checkpoint at ``path`` cannot continue as ``config`` (see :func:`resume_differences`;
    also when the training code changed since it was written); empty when :func:`train` can resume
    from it or there is no readable checkpoint."""
    state = read_checkpoint(path)
    return [] if state is None else _checkpoint_differences(state, config)


def load_checkpoint(path: Path, config: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if :func:`train <das.train.train>` can resume ``config`` from it;
    ``None`` when there is none (or it was damaged); ``ValueError`` when it belongs to another run."""
    state = read_checkpoint(path)
    if state is None:
        return None
    differ = _checkpoint_differences(state, config)
    if differ:
        raise ValueError(
            f"checkpoint {path} belongs to a different config ({', '.join(differ)} differ); "
            "delete it or rerun with force to start over"
        )
    return state


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a temporary file of its own in the same folder, then a
    rename), so a crash mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save({**state, "training_digest": training_digest()}, file)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rng_state(device: torch.device, generator: torch.Generator) -> dict[str, Tensor]:
    """The RNG states a resumed run needs: torch's global CPU RNG, the sampler's generator and, on
    CUDA, the device's RNG."""
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Tensor], device: torch.device, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
