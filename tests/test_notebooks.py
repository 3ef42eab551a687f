"""The book's notebooks: parameters cells, parameter profiles, nbval references, and the runner."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import nbformat
import pytest

from das import book

NAMES = book.toc_notebooks()
REQUIRED_KNOBS = {"profile", "seed", "device"}
# Knobs that make a notebook cheaper; every notebook needs one so CI (`smallest`) can shrink it.
# Extend this set when a chapter shrinks along a new axis.
SHRINK_KNOBS = {
    "epochs",
    "max_epochs",
    "seeds",
    "datasets",
    "methods",
    "ratios",
    "max_samples",
    "num_samples",
    "num_volumes",
    "num_videos",
    "repeats",
    "num_draws",
    "grad_samples",
}


def parameters_cell(name: str) -> dict[str, object]:
    """``{knob: default}`` from the notebook's one ``parameters`` cell of plain literal assignments."""
    nb = book.read_notebook(book.source_path(name))
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{name}: expected one cell tagged parameters, found {len(cells)}"
    knobs: dict[str, object] = {}
    for statement in ast.parse(cells[0].source).body:
        assert isinstance(statement, ast.Assign) and len(statement.targets) == 1, (
            f"{name}: the parameters cell must hold only `name = literal` lines (papermill overrides "
            f"them), got {ast.unparse(statement)!r}"
        )
        target = statement.targets[0]
        assert isinstance(target, ast.Name), f"{name}: cannot override {ast.unparse(target)!r}"
        knobs[target.id] = ast.literal_eval(statement.value)
    return knobs


def test_toc_lists_every_notebook_and_only_existing_ones() -> None:
    assert NAMES, "_toc.yml lists no notebooks"
    on_disk = {p.stem for p in book.NOTEBOOKS_DIR.glob("*.py")}
    assert not set(NAMES) - on_disk, f"_toc.yml names notebooks without a source: {set(NAMES) - on_disk}"
    assert not on_disk - set(NAMES), f"notebooks missing from _toc.yml: {sorted(on_disk - set(NAMES))}"


@pytest.mark.parametrize("name", NAMES)
def test_parameters_cell_has_the_knobs(name: str) -> None:
    knobs = parameters_cell(name)
    missing = REQUIRED_KNOBS - set(knobs)
    assert not missing, f"{name}: the parameters cell lacks {sorted(missing)}"
    assert knobs["profile"] in book.PROFILES, f"{name}: default profile {knobs['profile']!r} unknown"
    assert SHRINK_KNOBS & set(knobs), (
        f"{name}: no knob that shrinks the notebook (one of {sorted(SHRINK_KNOBS)}); CI runs every "
        f"notebook in the smallest profile and needs one"
    )


@pytest.mark.parametrize("name", NAMES)
def test_smallest_profile_shrinks_the_notebook(name: str) -> None:
    overrides = book.load_profiles()["smallest"].get(name) or {}
    assert SHRINK_KNOBS & set(overrides), (
        f"{name}: notebooks/parameters.yml sets none of its shrink knobs "
        f"{sorted(SHRINK_KNOBS & set(parameters_cell(name)))} in the smallest profile"
    )


def test_parameters_yml_names_only_existing_notebooks_and_knobs() -> None:
    for profile, notebooks in book.load_profiles().items():
        for name, overrides in notebooks.items():
            assert name in NAMES, f"parameters.yml, {profile}: {name!r} is not a notebook in _toc.yml"
            assert "profile" not in overrides, f"parameters.yml, {profile}/{name}: profile is injected"
            unknown = set(overrides or {}) - set(parameters_cell(name))
            assert not unknown, (
                f"parameters.yml, {profile}/{name}: {sorted(unknown)} not in the notebook's parameters cell"
            )


@pytest.mark.parametrize("name", NAMES)
def test_nbval_reference_is_current(name: str) -> None:
    """The committed reference runs the same code nbval would get from the source: else it is stale."""
    path = book.NBVAL_DIR / f"{name}.ipynb"
    assert path.is_file(), f"no nbval reference {path}: run `make nbval-refs`"
    stored = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    current = [c.source for c in book.parameterized(name, "smallest").cells if c.cell_type == "code"]
    assert stored == current, (
        f"{path} is stale: its code differs from notebooks/{name}.py with the smallest parameters; "
        f"run `make nbval-refs` and review the changed outputs"
    )


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown profile 'fast'.*smallest, quick, paper"):
        book.notebook_parameters("03_gumbel", "fast")


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A notebooks folder in tmp_path; the runner's changes to the environment undone afterwards."""
    for variable in ("PYTHONPATH", "DAS_DATA_DIR", "PYDEVD_DISABLE_FILE_VALIDATION"):
        monkeypatch.setenv(variable, os.environ.get(variable, ""))
    (tmp_path / "notebooks").mkdir()
    return tmp_path


def write_notebook(folder: Path, name: str, body: str) -> None:
    header = '# %% tags=["parameters"]\nprofile = "quick"\n\n'
    (folder / "notebooks" / f"{name}.py").write_text(header + body)


def test_runner_skips_an_unchanged_notebook_and_reruns_a_changed_one(scratch: Path) -> None:
    write_notebook(scratch, "tiny", "# %%\nprint(profile)\n")
    run = lambda: book.run_notebook(  # noqa: E731
        "tiny", "smallest", scratch / "out", notebooks_dir=scratch / "notebooks", package="fixed"
    )
    first, second = run(), run()
    assert (first.cached, second.cached) == (False, True)
    outputs = [o for c in nbformat.read(first.output, as_version=4).cells for o in c.get("outputs", [])]
    assert any(o.get("text") == "smallest\n" for o in outputs), "the profile was not injected"
    write_notebook(scratch, "tiny", "# %%\nprint(profile, 2)\n")
    assert run().cached is False


def test_runner_names_the_failing_notebook_and_cell(scratch: Path) -> None:
    write_notebook(scratch, "broken", "# %%\nx = 1\n\n# %%\nraise RuntimeError('boom in the test')\n")
    with pytest.raises(book.NotebookFailed) as failure:
        book.run_notebook("broken", "smallest", scratch / "out", notebooks_dir=scratch / "notebooks")
    message = str(failure.value)
    assert "notebook broken failed in cell" in message
    assert "broken.py:8" in message  # the failing cell's first line in the jupytext source
    assert "RuntimeError: boom in the test" in message
    assert not (scratch / "out" / "broken.key").exists(), "a failed run must not be cached"
