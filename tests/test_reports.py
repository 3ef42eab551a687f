"""Tables the chapters draw from records (das.reports): curves, the protocol ranking and choice."""

from __future__ import annotations

import pandas as pd
import pytest
from record_helpers import valid_record

from das.reports import choose_protocol, curves, last_epochs_mean, protocol_ranking, protocol_table


def run(protocol: str, method: str, seed: int, aucs: list[float]) -> dict:
    record = valid_record("adrenalmnist3d", method, seed, size=28, epochs=len(aucs), group=f"protocol/{protocol}")
    record["history"] = [{"epoch": e + 1, "val_auc": a, "val_loss": 1.0} for e, a in enumerate(aucs)]
    record["epochs_run"], record["best_epoch"] = len(aucs), max(range(len(aucs)), key=aucs.__getitem__) + 1
    return record


def test_the_ranking_uses_the_last_epochs_and_the_simplest_close_candidate_wins() -> None:
    records = [run("plain", m, s, [0.6, 0.7, 0.8, 0.70, 0.70]) for m in ("full", "das") for s in (0, 1)]
    records += [run("fancy", m, s, [0.6, 0.7, 0.7, 0.71, 0.71 + 0.01 * s]) for m in ("full", "das") for s in (0, 1)]
    records += [run("worse", m, s, [0.9, 0.9, 0.9, 0.5, 0.5]) for m in ("full", "das") for s in (0, 1)]
    assert list(last_epochs_mean(records[:1], last=2)) == [0.70]
    ranking = protocol_ranking(records, last=2)
    assert list(ranking["protocol"]) == ["fancy", "plain", "worse"]  # worse peaked early, then fell
    assert choose_protocol(ranking, ["plain", "fancy", "worse"]) == "fancy"  # plain is not within one SE
    close = protocol_ranking(records[:4] + records[4:8], last=3)
    assert choose_protocol(close, ["plain", "fancy"]) == "plain"  # within one SE: the simpler one
    table = protocol_table(records, last=2)
    assert set(table["protocol"]) == {"plain", "fancy", "worse"} and (table["n_seeds"] == 2).all()


def test_curves_have_one_row_per_epoch_and_mark_the_selected_one() -> None:
    frame = curves([run("plain", "das", 0, [0.6, 0.8, 0.7])])
    assert isinstance(frame, pd.DataFrame) and len(frame) == 3
    assert frame.loc[frame["best"], "epoch"].tolist() == [2]
    assert frame["val_auc"].tolist() == pytest.approx([0.6, 0.8, 0.7])


def test_simplest_first_counts_changed_settings_then_the_milder_augmentation() -> None:
    from das.experiments import simplest_first

    candidates = {
        "strong": {"lr_schedule": "step", "augment": "affine"},
        "defaults": {"lr_schedule": "constant"},  # TrainConfig's default: no change
        "mild": {"lr_schedule": "step", "augment": "flip"},
        "more": {"lr_schedule": "step", "augment": "flip", "weight_decay": 0.05},
    }
    assert simplest_first(candidates) == ["defaults", "mild", "strong", "more"]
    order = simplest_first()  # today's candidates: the flip counts as milder than the affine recipe
    assert order.index("step-auc-flip-balanced") < order.index("step-auc-affine-wd")
    assert order.index("step-auc-flip-wd-balanced") < order.index("step-auc-affine-wd-balanced")
