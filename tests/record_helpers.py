"""Records for tests of the results store."""

from __future__ import annotations


def valid_record(
    dataset: str = "synthetic",
    method: str = "das",
    seed: int = 0,
    *,
    group: str = "p",
    metrics: dict | None = None,
    **config: object,
) -> dict:
    """A stored record that :func:`das.results.validate_record` accepts, with the given metrics and
    config fields (TrainConfig defaults otherwise; 3 epochs)."""
    from das.config import TrainConfig
    from das.provenance import training_digest, versions
    from das.results import SCHEMA_VERSION

    values = TrainConfig(
        **{"dataset": dataset, "method": method, "seed": seed, "epochs": 3, "device": "cpu", **config}
    ).to_dict()
    epochs = values["epochs"]
    return {
        "schema": SCHEMA_VERSION,
        "group": group,
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "config": values,
        "num_frames": 28,
        "k": 14 if method != "full" else 28,
        "metrics": metrics if metrics is not None else {"balanced_accuracy": 0.5, "auc": 0.5, "accuracy": 0.5},
        "val_metrics": {"balanced_accuracy": 0.5, "auc": 0.5, "accuracy": 0.5},
        "epochs_run": epochs,
        "best_epoch": 1,
        "stopped_early": False,
        "history": [{"epoch": e, "train_loss": 1.0, "val_loss": 1.0} for e in range(1, epochs + 1)],
        "timings": {"throughput_frames_per_s": 10.0, "wall_s": 1.0},
        "flops_per_volume": 100,
        "selection_histogram": [1] * 28,
        "sampler_lr": 1e-3,
        "device": "cpu",
        "threads": 1,
        "provenance": {
            "versions": versions(),
            "training_digest": training_digest(),
            "platform": {},
            "finished_at": "2026-01-01T00:00:00+00:00",
        },
    }
