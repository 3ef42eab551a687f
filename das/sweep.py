"""The Table 1 runner: every (dataset, method, seed) of a profile, one JSON per run in the results store.

A run whose JSON exists with the same settings is skipped (unless ``force``); a stored run of other
settings (the profile changed since) is redone. A run interrupted mid-training resumes from
its per-epoch checkpoint, so an interrupted sweep loses at most one epoch and a finished one costs
nothing to rerun. Data are loaded once per dataset, and only when some run of it still has work to do.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from das.profiles import get_profile
from das.results import checkpoint_path, result_path, versions, write_json_atomic
from das.train import Splits, TrainConfig, checkpoint_differences, load_splits, train


def run_one(
    config: TrainConfig,
    *,
    profile: str,
    results_dir: str | Path = "results",
    force: bool = False,
    splits: Splits | None = None,
    keep_checkpoint: bool = False,
) -> Path:
    """Train and test ``config`` unless its JSON exists (or ``force``); return the JSON's path.

    A stored JSON counts only if it was made by the same config, up to fields that do not change the
    numbers (:data:`das.train.RUN_LOCAL_FIELDS`: device, threads, ...) and, with ``keep_checkpoint``,
    if its checkpoint is still there; otherwise the run is redone. The run checkpoints every epoch
    under ``<profile>/checkpoints/`` and resumes from there (a checkpoint of other settings is
    discarded); the checkpoint is deleted once the JSON is written unless ``keep_checkpoint``.
    ``force`` also discards an existing checkpoint, so the run starts over.
    """
    path = result_path(results_dir, profile, config.dataset, config.method, config.seed)
    checkpoint = checkpoint_path(results_dir, profile, config.dataset, config.method, config.seed)
    if path.exists() and not force and stored_run_matches(path, config) and (checkpoint.exists() or not keep_checkpoint):
        return path
    if force or (checkpoint.exists() and checkpoint_differences(checkpoint, config)):
        checkpoint.unlink(missing_ok=True)  # asked to start over, or the checkpoint is of other settings
    result = train(config, splits, checkpoint=checkpoint)
    record: dict[str, Any] = {
        "profile": profile,
        "dataset": config.dataset,
        "method": config.method,
        "seed": config.seed,
        **result.record(),
        "versions": versions(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(path, record)
    if not keep_checkpoint:
        checkpoint.unlink(missing_ok=True)
        for folder in checkpoint.parents:  # drop the folders it leaves empty, up to <profile>/checkpoints
            if folder == Path(results_dir) / profile or any(folder.iterdir()):
                break
            folder.rmdir()
    return path


def stored_run_matches(path: Path, config: TrainConfig) -> bool:
    """The run stored at ``path`` was made with ``config``'s settings (run-local fields aside)."""
    return not config.differences(json.loads(path.read_text())["config"])


def _data_key(config: TrainConfig) -> tuple[Any, ...]:
    """Configs with equal keys share the same loaded splits."""
    return (config.dataset, config.size, config.data_dir, config.download, repr(sorted(config.dataset_options.items())),
            config.max_train_samples, config.max_eval_samples)


def table1_configs(
    profile: str = "quick",
    datasets: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    **overrides: Any,
) -> list[TrainConfig]:
    """The validated config of every run :func:`run_table1` would do (same arguments), dataset-major."""
    spec = get_profile(profile)
    return [
        spec.config(dataset, method, seed, **overrides)
        for dataset in (datasets if datasets is not None else spec.datasets)
        for method in (methods if methods is not None else spec.methods)
        for seed in (seeds if seeds is not None else spec.seeds)
    ]


def run_table1(
    profile: str = "quick",
    datasets: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    results_dir: str | Path = "results",
    force: bool = False,
    **overrides: Any,
) -> list[Path]:
    """Run (or resume) the Table 1 sweep of ``profile``; return the JSON path of every run, in order.

    ``datasets``, ``methods``, ``seeds`` restrict or replace the profile's lists. ``overrides`` are
    :class:`~das.train.TrainConfig` fields applied to every run (``None`` values ignored): e.g.
    ``epochs=1, max_train_samples=32, max_eval_samples=32`` for a tiny CI version, ``device="cuda"``,
    ``download=True``, ``quiet=True``. Every config is validated before anything runs.
    """
    configs = table1_configs(profile, datasets, methods, seeds, **overrides)
    paths, loaded = [], {}
    for number, config in enumerate(configs, 1):
        path = result_path(results_dir, profile, config.dataset, config.method, config.seed)
        if path.exists() and not force and stored_run_matches(path, config):
            paths.append(path)
            continue
        key = _data_key(config)
        if key not in loaded:
            loaded = {key: load_splits(config)}  # keep one dataset in memory at a time
        if not config.quiet:
            print(f"[{number}/{len(configs)}] {profile}: {config.dataset}/{config.method} seed {config.seed}",
                  file=sys.stderr, flush=True)
        paths.append(run_one(config, profile=profile, results_dir=results_dir, force=force, splits=loaded[key]))
    return paths
