"""The GPU measurement script (measurements/gpu/measure.py): its commands are valid ``das`` command
lines, so the first GPU session spends its time measuring, not fixing the script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from das.cli import build_parser

SCRIPT = Path(__file__).resolve().parents[1] / "measurements" / "gpu" / "measure.py"


def _load():
    spec = importlib.util.spec_from_file_location("measure", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("smoke", [False, True])
def test_every_command_parses(tmp_path: Path, smoke: bool) -> None:
    commands = _load().commands(tmp_path, gpus_per_run=0.125, smoke=smoke)
    assert [command[3] for command in commands] == ["bench", "project", "table1"]
    for command in commands:
        args = build_parser().parse_args(command[3:])  # after "python -m das"
        assert args.device == ("cpu" if smoke else "cuda")
        if command[3] != "bench":
            assert args.executor == "ray" and args.compile_mode == "reduce-overhead"
            assert bool(args.gpus_per_run) is not smoke  # packed onto the GPU, never in a smoke test


def test_full_run_covers_three_seeds_of_every_method(tmp_path: Path) -> None:
    table1 = build_parser().parse_args(_load().commands(tmp_path, 0.25, smoke=False)[2][3:])
    assert table1.seeds == [0, 1, 2] and table1.methods is None and table1.datasets == ["adrenalmnist3d"]
    assert table1.gpus_per_run == 0.25
