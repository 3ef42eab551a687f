"""Provenance: which code, versions and kind of machine produced a number.

- :func:`training_digest`: a hash of the sources a training run's numbers depend on (the trainer and
  every module it imports), stored in each run's record and checkpoint;
- :func:`package_digest`: a hash of every source of the package (a chapter's or a benchmark's output
  depends on all of them);
- :func:`versions` and :func:`machine`: the libraries and the machine, without host names.
"""

from __future__ import annotations

import ast
import hashlib
import os
import platform
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).parent


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(PACKAGE.parent).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def package_digest() -> str:
    """Hash of every source file of the ``das`` package: a notebook's output or a benchmark's figures
    depend on all of them."""
    return _digest(list(PACKAGE.rglob("*.py")))


def _package_imports(path: Path) -> set[Path]:
    """Source files of the package that the module at ``path`` imports, with the ``__init__.py`` of
    every package on the way (importing ``das.a.b`` runs ``das/a/__init__.py`` too)."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != PACKAGE.name:
                continue
            for depth in range(1, len(parts) + 1):
                target = PACKAGE.joinpath(*parts[1:depth])
                found |= {p for p in (target.with_suffix(".py"), target / "__init__.py") if p.is_file()}
    return found


@cache
def training_digest() -> str:
    """Hash of the sources a run's numbers depend on: ``das/train.py`` and every module of the package
    it imports, directly or not (not the command line, the store, the book or the benchmark)."""
    seen: set[Path] = set()
    todo = [PACKAGE / "train.py"]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(_package_imports(path))
    return _digest(list(seen))


def versions() -> dict[str, str]:
    """Versions that decide the numbers: python, torch, torchvision, numpy, scikit-learn, das."""
    import numpy
    import sklearn
    import torch
    import torchvision

    import das

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
        "das": das.__version__,
    }


def machine() -> dict[str, Any]:
    """The kind of machine a run or a measurement ran on (no host names)."""
    return {
        "system": platform.system(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
    }


def environment(device: Any) -> dict[str, Any]:
    """Where the figures were measured; ``package_digest`` (a hash of the ``das`` sources) says which
    code, so that a reader of the JSON can tell whether it is still current."""
    import torch

    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "package_digest": package_digest(),
    }
