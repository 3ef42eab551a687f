"""Every GPU figure the book quotes, measured in one go (about 10 minutes on one H200).

    python measurements/gpu/measure.py [--out measurements/gpu] [--gpus-per-run 0.125]

Runs, in order, each as the project's own command (so a reader can rerun any one of them):

1. ``das bench``: inference time, FLOPs and memory of every method, the training step eager and
   compiled, and every model under CUDA graphs (``bench.json``, ``bench.md``);
2. ``das project --profile paper`` with the training step captured in CUDA graphs and runs packed
   onto the GPU by Ray (``projection-paper.json``);
3. ``das table1 --profile real`` on AdrenalMNIST3D, 6 methods x 3 seeds, packed on Ray, compiled
   (records under ``real/``).

``commands.json`` records each command, its wall time and exit status, the commit and the machine.
A step that fails is recorded and the rest still run; the script exits non-zero at the end.
``--smoke`` runs every step at toy size on the CPU, to check the script before spending GPU time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

from das.provenance import environment, machine
from das.results import write_json_atomic


def commands(out: Path, gpus_per_run: float, smoke: bool) -> list[list[str]]:
    """The command lines, in order; ``smoke`` shrinks each one to seconds on the CPU."""
    das = [sys.executable, "-m", "das"]
    device = ["--device", "cpu" if smoke else "cuda"]
    packed = ["--executor", "ray", "--cpus-per-run", "1"]
    packed += ["--workers", "2"] if smoke else ["--gpus-per-run", str(gpus_per_run)]
    compiled = ["--compile", "--compile-mode", "reduce-overhead"]
    bench = [*das, "bench", *device, "--compiled-training", "--out", str(out)]
    bench += ["--quick", "--no-memory"] if smoke else ["--cuda-graphs", "--fused-features"]
    project = [*das, "project", "--profile", "paper", *device, *packed, *compiled, "--out", str(out)]
    project += ["--datasets", "adrenalmnist3d", "--methods", "full", "das", "--steps", "2"] if smoke else []
    table1 = [*das, "table1", "--profile", "real", "--datasets", "adrenalmnist3d", *device, *packed, *compiled]
    table1 += ["--results-dir", str(out / "real"), "--quiet"]
    table1 += (
        ["--methods", "full", "das", "--seeds", "0", "--epochs", "1", "--max-train-samples", "32"] if smoke else []
    )
    table1 += [] if smoke else ["--seeds", "0", "1", "2"]
    return [bench, project, table1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="default: this folder (with --smoke: results/measure-smoke)")
    parser.add_argument("--gpus-per-run", type=float, default=0.125, help="GPU share per packed run (default 0.125)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU, to test this script")
    args = parser.parse_args()
    args.out = args.out or (Path("results/measure-smoke") if args.smoke else Path(__file__).resolve().parent)
    args.out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    device = torch.device("cpu" if args.smoke else "cuda")
    log: dict = {"commit": commit, "machine": machine(), **environment(device), "steps": []}
    for command in commands(args.out, args.gpus_per_run, args.smoke):
        print("$", " ".join(command[1:]), flush=True)
        start = time.perf_counter()
        status = subprocess.run(command).returncode
        log["steps"].append({"command": command[1:], "wall_s": time.perf_counter() - start, "returncode": status})
        write_json_atomic(args.out / "commands.json", log)  # after every step: a killed run keeps what finished
    failed = [" ".join(step["command"][2:4]) for step in log["steps"] if step["returncode"] != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
