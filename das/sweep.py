"""Sweeps: lists of runs, each trained or read back from the results store, in process or on Ray.

A :class:`Run` is one :class:`~das.config.TrainConfig` and the folder of the store it belongs to
(``group``: ``quick``, ``real/ablations/ratio-0.25`` ...). :func:`run_sweep` takes any list of runs (a
profile's Table 1, the variants of an ablation, the runs a chapter needs) and returns one
:class:`Outcome` per run, in order: its record and whether it was trained now.

1. A run whose stored record is current (:func:`das.results.stale_reasons` finds nothing) is read back.
2. The others train on the chosen executor:

   - ``"local"``: in this process, one after the other; data are loaded once per dataset.
   - ``"ray"``: one Ray task per run, ``workers`` at a time, with ``cpus_per_run`` CPU threads and
     ``gpus_per_run`` (fractional: several small runs share a GPU) each; on a local Ray cluster sized
     to this machine, or on the cluster at ``address``. Workers return records and this process
     writes every JSON atomically, so results need no shared filesystem. A worker that dies
     mid-run is retried and resumes from its checkpoint (under ``checkpoint_dir``; give a path every
     worker can reach, or a retry on another node starts over).

3. Every run checkpoints after each epoch and resumes from there; the checkpoint is deleted once the
   record is written. A run that fails is reported with its config and the others go on.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import torch
from filelock import FileLock, Timeout
from tqdm import tqdm

from das.checkpoint import checkpoint_differences
from das.config import TrainConfig
from das.profiles import get_profile
from das.results import (
    DamagedRecordWarning,
    checkpoint_path,
    make_record,
    read_record,
    result_path,
    stale_reasons,
    write_json_atomic,
)
from das.train import Splits, load_splits, train

EXECUTORS: tuple[str, ...] = ("local", "ray")


@dataclass(frozen=True)
class Run:
    """One run of a sweep: a config and the store folder (``group``) its record goes to."""

    group: str
    config: TrainConfig

    def path(self, results_dir: str | Path) -> Path:
        return result_path(results_dir, self.group, self.config.dataset, self.config.method, self.config.seed)

    def checkpoint(self, checkpoint_root: str | Path) -> Path:
        return checkpoint_path(checkpoint_root, self.group, self.config.dataset, self.config.method, self.config.seed)

    @property
    def label(self) -> str:
        c = self.config
        return f"{self.group}: {c.dataset}/{c.method} seed {c.seed}"


@dataclass
class Outcome:
    """What became of one run: its ``record`` (``None`` if it failed), whether it ``trained`` now, and
    the ``error`` (one line) and ``traceback`` of a failure."""

    run: Run
    path: Path
    record: dict[str, Any] | None = None
    trained: bool = False
    error: str | None = None
    traceback: str | None = field(default=None, repr=False)


class SweepFailed(RuntimeError):
    """Some runs of a sweep failed; ``outcomes`` holds every run's outcome."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        self.outcomes = outcomes
        failed = [o for o in outcomes if o.error is not None]
        lines = [f"  {o.run.label}: {o.error}" for o in failed]
        super().__init__(f"{len(failed)} of {len(outcomes)} runs failed:\n" + "\n".join(lines))


def stored_record(run: Run, results_dir: str | Path) -> dict[str, Any] | None:
    """The run's stored record if it is current for its config, else ``None``. A stored file that is
    not a valid record is named in a :class:`~das.results.DamagedRecordWarning` (and so retrained)."""
    path = run.path(results_dir)
    if not path.exists():
        return None
    record, problems = read_record(path)
    if record is None:
        warnings.warn(
            f"{path}: not a valid run record ({problems[0]}); it will be retrained", DamagedRecordWarning, stacklevel=2
        )
        return None
    return None if stale_reasons(record, run.config) else record


def train_run(
    run: Run,
    checkpoint_root: str | Path,
    splits: Splits | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train ``run`` (resuming its checkpoint when it has one of the same settings) and return its
    record; the caller writes it. A checkpoint of other settings is discarded."""
    checkpoint = run.checkpoint(checkpoint_root)
    if checkpoint.exists() and checkpoint_differences(checkpoint, run.config):
        checkpoint.unlink()
    result = train(run.config, splits, checkpoint=checkpoint, on_epoch=on_epoch)
    return make_record(run.group, result)


def _drop_checkpoint(run: Run, checkpoint_root: str | Path) -> None:
    checkpoint = run.checkpoint(checkpoint_root)
    checkpoint.unlink(missing_ok=True)
    stop = Path(checkpoint_root) / run.group
    for folder in checkpoint.parents:  # drop the folders it leaves empty, up to <group>
        if folder == stop or not folder.is_relative_to(stop) or not folder.exists() or any(folder.iterdir()):
            break
        try:
            folder.rmdir()
        except OSError:  # another process put something there meanwhile
            break


class _Progress:
    """A sweep's progress on a text stream: a line per finished run (dataset, method, seed, test AUC,
    wall time) and, for runs trained in this process, a line per epoch with the time left (a bar
    instead, when the stream is a terminal)."""

    def __init__(self, stream: TextIO | None, total: int) -> None:
        self.stream, self.total, self.done, self.start = stream, total, 0, time.perf_counter()
        terminal = stream is not None and stream.isatty()
        self.bar = tqdm(total=total, desc="runs", unit="run", file=stream, disable=not terminal or not total)
        self.epoch_lines = stream is not None and not terminal
        self.run_start, self.first_epoch = self.start, 0

    def _write(self, line: str) -> None:
        if self.stream is not None:
            self.bar.write(line, file=self.stream)
            self.stream.flush()

    def begin(self) -> None:
        self.run_start, self.first_epoch = time.perf_counter(), 0

    def epoch(self, outcome: Outcome, entry: dict[str, float]) -> None:
        if not self.epoch_lines:
            return
        epoch, epochs = int(entry["epoch"]), outcome.run.config.epochs
        self.first_epoch = self.first_epoch or epoch  # a resumed run starts past epoch 1
        run_elapsed = time.perf_counter() - self.run_start
        run_left = run_elapsed / (epoch - self.first_epoch + 1) * (epochs - epoch)
        per_run = (time.perf_counter() - self.start) / max(self.done, 1) if self.done else run_elapsed + run_left
        left = run_left + per_run * (self.total - self.done - 1)
        self._write(
            f"[run {self.done + 1}/{self.total}] {outcome.run.label}: epoch {epoch}/{epochs}, "
            f"about {_duration(left)} left"
        )

    def waiting(self, outcome: Outcome) -> None:
        self._write(f"waiting for another sweep to finish {outcome.run.label}")

    def finish(self, outcome: Outcome) -> None:
        self.done += 1
        self.bar.update(1)
        self._write(f"[run {self.done}/{self.total}] {_summary_line(outcome)}")

    def close(self) -> None:
        self.bar.close()


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _data_key(config: TrainConfig) -> tuple[Any, ...]:
    """Configs with equal keys share the same loaded splits."""
    return (
        config.dataset,
        config.size,
        config.data_dir,
        config.download,
        repr(sorted(config.dataset_options.items())),
        config.max_train_samples,
        config.max_eval_samples,
    )


def _finish(
    outcome: Outcome,
    record: dict[str, Any],
    results_dir: str | Path,
    checkpoint_root: str | Path,
    keep_checkpoint: bool,
) -> None:
    write_json_atomic(outcome.path, record)
    outcome.record, outcome.trained = record, True
    if not keep_checkpoint:
        _drop_checkpoint(outcome.run, checkpoint_root)


def _fail(outcome: Outcome, error: BaseException) -> None:
    outcome.error = f"{type(error).__name__}: {error}".splitlines()[0]
    outcome.traceback = "".join(traceback.format_exception(error))


class _Claims:
    """Who trains which run. A sweep trains a run only while it holds the run's lock (:func:`run_lock`)
    and only if, once the lock is held, the run is still not stored and current; it never waits for a
    lock while holding one, so two sweeps over one store cannot deadlock."""

    def __init__(
        self, results_dir: Path, checkpoint_root: Path, force: bool, keep_checkpoint: bool, progress: _Progress
    ) -> None:
        self.results_dir, self.checkpoint_root = results_dir, checkpoint_root
        self.force, self.keep_checkpoint, self.progress = force, keep_checkpoint, progress
        self.held: dict[int, FileLock] = {}

    def _stored_meanwhile(self, outcome: Outcome) -> bool:
        record = None if self.force else stored_record(outcome.run, self.results_dir)
        if record is None or (self.keep_checkpoint and not outcome.run.checkpoint(self.checkpoint_root).exists()):
            return False
        outcome.record = record
        self.progress.finish(outcome)
        return True

    def claim(self, outcome: Outcome, wait: bool) -> bool | None:
        """``True``: this sweep trains it (lock held); ``None``: another sweep holds it (only when not
        ``wait``); ``False``: it was stored meanwhile, its record is read back."""
        lock = run_lock(outcome.run, self.results_dir)
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except Timeout:
            return None
        if self._stored_meanwhile(outcome):
            lock.release()
            return False
        if self.force:
            outcome.run.checkpoint(self.checkpoint_root).unlink(missing_ok=True)
        self.held[id(outcome)] = lock
        return True

    def release(self, outcome: Outcome) -> None:
        lock = self.held.pop(id(outcome), None)
        if lock is not None:
            lock.release()

    def release_all(self) -> None:
        for lock in self.held.values():
            lock.release()
        self.held.clear()


def _train_locally(outcome: Outcome, loaded: dict[tuple[Any, ...], Splits], claims: _Claims) -> None:
    results_dir, checkpoint_root, keep_checkpoint, progress = (
        claims.results_dir,
        claims.checkpoint_root,
        claims.keep_checkpoint,
        claims.progress,
    )
    config = outcome.run.config
    progress.begin()
    try:
        key = _data_key(config)
        if key not in loaded:
            loaded.clear()  # one dataset in memory at a time
            loaded[key] = load_splits(config)
        record = train_run(outcome.run, checkpoint_root, loaded[key], partial(progress.epoch, outcome))
        _finish(outcome, record, results_dir, checkpoint_root, keep_checkpoint)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:  # noqa: BLE001 -- reported with its config; the sweep goes on
        _fail(outcome, error)
    progress.finish(outcome)


def _run_local(pending: list[Outcome], claims: _Claims) -> None:
    loaded: dict[tuple[Any, ...], Splits] = {}
    deferred = []
    for outcome in pending:
        state = claims.claim(outcome, wait=False)
        if state is None:  # another sweep is training it: come back to it at the end
            deferred.append(outcome)
            continue
        if state:
            try:
                _train_locally(outcome, loaded, claims)
            finally:
                claims.release(outcome)
    for outcome in deferred:
        claims.progress.waiting(outcome)
        if claims.claim(outcome, wait=True):
            try:
                _train_locally(outcome, loaded, claims)
            finally:
                claims.release(outcome)


def _ray_task(group: str, config: dict[str, Any], checkpoint_root: str, threads: int) -> dict[str, Any]:
    """What a Ray worker runs: one training run, returned as its record."""
    torch.set_num_threads(threads)
    return train_run(Run(group, TrainConfig.from_dict(config)), checkpoint_root)


def _run_ray(
    pending: list[Outcome],
    claims: _Claims,
    *,
    address: str | None,
    workers: int | None,
    cpus_per_run: int,
    gpus_per_run: float,
    max_retries: int,
) -> None:
    import ray

    results_dir, checkpoint_root, keep_checkpoint, progress = (
        claims.results_dir,
        claims.checkpoint_root,
        claims.keep_checkpoint,
        claims.progress,
    )
    started_here = not ray.is_initialized()
    if started_here:
        env = {name: os.environ[name] for name in ("DAS_DATA_DIR",) if name in os.environ}
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": env} if env else None,
        )
    try:
        task = ray.remote(_ray_task).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=max_retries)
        limit = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_run))
        queue, deferred, running = list(pending), [], {}
        while queue or deferred or running:
            while (queue or deferred) and len(running) < limit:
                if queue:
                    outcome = queue.pop(0)
                    state = claims.claim(outcome, wait=False)
                    if state is None:
                        deferred.append(outcome)
                        continue
                elif running:
                    break  # wait for our own runs before blocking on another sweep's
                else:
                    outcome = deferred.pop(0)
                    progress.waiting(outcome)
                    state = claims.claim(outcome, wait=True)
                if state:
                    ref = task.remote(
                        outcome.run.group, outcome.run.config.to_dict(), str(checkpoint_root), cpus_per_run
                    )
                    running[ref] = outcome
            if not running:
                continue
            [done], _ = ray.wait(list(running), num_returns=1)
            outcome = running.pop(done)
            try:
                record = ray.get(done)
                reasons = stale_reasons(record, outcome.run.config)
                if reasons:  # e.g. a worker with another das or without the GPU this driver has
                    raise RuntimeError(f"the worker's record does not stand for this run: {'; '.join(reasons)}")
                _finish(outcome, record, results_dir, checkpoint_root, keep_checkpoint)
            except Exception as error:  # noqa: BLE001 -- a RayTaskError wraps the run's own exception
                _fail(outcome, getattr(error, "cause", None) or error)
            finally:
                claims.release(outcome)
            progress.finish(outcome)
    finally:
        if started_here:
            ray.shutdown()


def _summary_line(outcome: Outcome) -> str:
    c = outcome.run.config
    head = f"{outcome.run.group} {c.dataset}/{c.method} seed {c.seed}"
    if outcome.error is not None:
        return f"{head}: FAILED ({outcome.error})"
    record = outcome.record or {}
    auc = (record.get("metrics") or {}).get("auc")
    wall = (record.get("timings") or {}).get("wall_s", float("nan"))
    auc_text = f"{auc:.3f}" if isinstance(auc, (int, float)) else "n/a"
    return f"{head}: test AUC {auc_text}, {record.get('epochs_run')} epochs, {wall:.0f} s"


def run_sweep(
    runs: Sequence[Run],
    results_dir: str | Path = "results",
    *,
    executor: str = "local",
    address: str | None = None,
    workers: int | None = None,
    cpus_per_run: int = 1,
    gpus_per_run: float = 0.0,
    checkpoint_dir: str | Path | None = None,
    force: bool = False,
    keep_checkpoint: bool = False,
    max_retries: int = 3,
    progress: bool | TextIO = True,
    raise_on_failure: bool = True,
) -> list[Outcome]:
    """Train or read back every run of ``runs``; one :class:`Outcome` per run, in order.

    On Ray, a run without ``num_threads`` gets ``cpus_per_run``, and ``device="auto"`` becomes
    ``"cuda"`` with ``gpus_per_run > 0``, else ``"cpu"`` (its outcome's config says so); the driver
    checks every record a worker returns (:func:`das.results.stale_reasons`).
    ``force`` retrains runs that are stored and current (their checkpoints discarded).
    ``keep_checkpoint`` keeps each run's last checkpoint (chapters that inspect the trained model)
    and retrains a stored run whose checkpoint is gone. ``progress``: report to stderr (``True``), to
    a text stream, or not at all (``False``): a line per finished run and per epoch with the time
    left, or a bar on a terminal. With ``raise_on_failure``, a sweep with failed runs raises
    :class:`SweepFailed` at the end, after every other run finished.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if executor == "local" and (workers not in (None, 1) or address is not None):
        raise ValueError(
            "the local executor runs one run at a time in this process; use executor='ray' "
            f"for workers={workers!r} or an address"
        )
    runs = as_executed(runs, executor, cpus_per_run, gpus_per_run)
    results_dir = Path(results_dir)
    checkpoint_root = Path(checkpoint_dir) if checkpoint_dir is not None else results_dir
    paths = [run.path(results_dir) for run in runs]
    duplicates = sorted({str(p) for p in paths if paths.count(p) > 1})
    if duplicates:
        raise ValueError(f"two runs of the sweep share a result file: {', '.join(duplicates)}")

    check_writable(results_dir)
    outcomes = [Outcome(run, path) for run, path in zip(runs, paths)]
    pending = []
    for outcome in outcomes:
        record = None if force else stored_record(outcome.run, results_dir)
        if record is not None and (not keep_checkpoint or outcome.run.checkpoint(checkpoint_root).exists()):
            outcome.record = record
            if not keep_checkpoint and outcome.run.checkpoint(checkpoint_root).exists():
                _drop_checkpoint(outcome.run, checkpoint_root)  # left behind by a sweep that was killed
        else:
            pending.append(outcome)

    stream = sys.stderr if progress is True else (progress or None)
    reporter = _Progress(stream, len(pending))
    claims = _Claims(results_dir, checkpoint_root, force, keep_checkpoint, reporter)
    start = time.perf_counter()
    try:
        if pending and executor == "local":
            _run_local(pending, claims)
        elif pending:
            _run_ray(
                pending,
                claims,
                address=address,
                workers=workers,
                cpus_per_run=cpus_per_run,
                gpus_per_run=gpus_per_run,
                max_retries=max_retries,
            )
    finally:
        claims.release_all()
        reporter.close()
    trained = sum(o.trained for o in outcomes)
    if stream is not None and trained:
        print(f"{trained} run(s) trained in {_duration(time.perf_counter() - start)}", file=stream)
    if raise_on_failure and any(o.error is not None for o in outcomes):
        raise SweepFailed(outcomes)
    return outcomes


def as_executed(runs: Sequence[Run], executor: str, cpus_per_run: int = 1, gpus_per_run: float = 0.0) -> list[Run]:
    """``runs`` with each config saying what ``executor`` gives it, which the record check compares:
    on Ray, a worker's threads and device (:func:`run_sweep`); locally, the runs as they are."""
    if executor != "ray":
        return list(runs)
    return [Run(run.group, _on_ray_worker(run.config, cpus_per_run, gpus_per_run)) for run in runs]


def _on_ray_worker(config: TrainConfig, cpus_per_run: int, gpus_per_run: float) -> TrainConfig:
    """``config`` as a Ray worker runs it: ``cpus_per_run`` threads unless set, and ``device="auto"``
    resolved by what the worker gets (Ray hides the GPUs from a task that asks for none)."""
    device = config.device if config.device != "auto" else ("cuda" if gpus_per_run > 0 else "cpu")
    return replace(config, num_threads=config.num_threads or cpus_per_run, device=device)


def run_lock(run: Run, results_dir: str | Path) -> FileLock:
    """The lock a sweep holds while it trains ``run``: an OS file lock on
    ``<results_dir>/.locks/<group>/<dataset>/<method>/seed<N>.lock``, so two sweeps over one store never
    train the same run at once. The operating system releases it when its holder exits, however it
    exits, so a killed sweep leaves no stale lock (on a network filesystem, this needs working
    ``flock``)."""
    c = run.config
    path = Path(results_dir) / ".locks" / run.group / c.dataset / c.method / f"seed{c.seed}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path, thread_local=False)


def check_writable(folder: str | Path) -> None:
    """``ValueError`` naming ``folder`` unless a file can be created in it (created if missing), so an
    unwritable store fails before any training, not after the first run."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"results folder {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(f"results folder {folder} is not writable: {error.strerror or error}") from None


def profile_runs(
    profile: str = "quick",
    datasets: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    **overrides: Any,
) -> list[Run]:
    """The runs of a profile's Table 1 (stored under the profile's name), dataset-major; ``datasets``,
    ``methods``, ``seeds`` restrict or replace the profile's lists and ``overrides`` are
    :class:`~das.config.TrainConfig` fields for every run (``None`` values ignored)."""
    spec = get_profile(profile)
    return [
        Run(profile, spec.config(dataset, method, seed, **overrides))
        for dataset in (datasets if datasets is not None else spec.datasets)
        for method in (methods if methods is not None else spec.methods)
        for seed in (seeds if seeds is not None else spec.seeds)
    ]


def profile_configs(profile: str = "quick", *selection: Sequence[Any] | None, **overrides: Any) -> list[TrainConfig]:
    """The configs of :func:`profile_runs` (same arguments), for projections and checks that need no store."""
    return [run.config for run in profile_runs(profile, *selection, **overrides)]
