"""The examples in the package's docstrings run as written (doctest)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES_WITH_EXAMPLES = ["das.samplers", "das.data"]


@pytest.mark.parametrize("name", MODULES_WITH_EXAMPLES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no example to run"
    assert result.failed == 0


def test_the_training_digest_covers_every_module_a_run_imports() -> None:
    """Every module of the package that importing das.train loads is hashed by training_digest."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, das.train; "
        "print('\\n'.join(sorted(m.__file__ for n, m in sys.modules.items() "
        "if n.startswith('das') and getattr(m, '__file__', None))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from das.provenance import PACKAGE, _package_imports

    seen, todo = set(), [PACKAGE / "train.py"]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(_package_imports(path))
    missing = sorted(path for path in loaded if Path(path) not in seen)
    assert not missing, f"modules a run imports but training_digest does not hash: {missing}"
