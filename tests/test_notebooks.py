"""The book's chapters: parameters cells, book scales, nbval references, tags, and the runner."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
from pathlib import Path

import nbformat
import pytest

from das import book

NAMES = book.toc_notebooks()
REQUIRED_KNOBS = {"scale", "seed", "device"}
# Knobs that make a notebook cheaper; every notebook needs one so CI (the `ci` scale) can shrink it.
# Extend this set when a chapter shrinks along a new axis.
SHRINK_KNOBS = {
    "epochs",
    "max_epochs",
    "seeds",
    "datasets",
    "methods",
    "ratios",
    "max_train_samples",
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
    assert knobs["scale"] == "laptop", f"{name}: the default scale must be laptop, got {knobs['scale']!r}"
    assert SHRINK_KNOBS & set(knobs), (
        f"{name}: no knob that shrinks the notebook (one of {sorted(SHRINK_KNOBS)}); CI runs every "
        f"notebook at the ci scale and needs one"
    )


# Chapters that train and time nothing (they read stored runs in seconds): the ci scale runs them as
# they are, so their checks hold in CI on the same runs as in the book.
NOTHING_TO_SHRINK = {"05_protocol"}


@pytest.mark.parametrize("name", NAMES)
def test_ci_scale_shrinks_the_notebook(name: str) -> None:
    overrides = book.load_scales()["ci"].get(name) or {}
    if name in NOTHING_TO_SHRINK:
        assert not overrides, f"{name} trains nothing, yet parameters.yml changes {sorted(overrides)} at the ci scale"
        return
    assert SHRINK_KNOBS & set(overrides), (
        f"{name}: notebooks/parameters.yml sets none of its shrink knobs "
        f"{sorted(SHRINK_KNOBS & set(parameters_cell(name)))} at the ci scale"
    )


def test_parameters_yml_names_only_existing_notebooks_and_knobs() -> None:
    for scale, notebooks in book.load_scales().items():
        for name, overrides in notebooks.items():
            assert name in NAMES, f"parameters.yml, {scale}: {name!r} is not a notebook in _toc.yml"
            assert "scale" not in overrides, f"parameters.yml, {scale}/{name}: scale is injected"
            unknown = set(overrides or {}) - set(parameters_cell(name))
            assert not unknown, (
                f"parameters.yml, {scale}/{name}: {sorted(unknown)} not in the notebook's parameters cell"
            )


@pytest.mark.parametrize("name", NAMES)
def test_nbval_reference_is_current(name: str) -> None:
    """The committed reference runs the same code nbval would get from the source: else it is stale."""
    path = book.NBVAL_DIR / f"{name}.ipynb"
    assert path.is_file(), f"no nbval reference {path}: run `make nbval-refs`"
    stored = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    current = [c.source for c in book.parameterized(name, "ci").cells if c.cell_type == "code"]
    assert stored == current, (
        f"{path} is stale: its code differs from notebooks/{name}.py with the ci parameters; "
        f"run `make nbval-refs` and review the changed outputs"
    )


def test_unknown_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scale 'fast'; valid scales: ci, laptop, gpu"):
        book.notebook_parameters("03_gumbel", "fast")


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A notebooks folder in tmp_path; the runner's changes to the environment undone afterwards."""
    for variable in ("PYTHONPATH", "DAS_DATA_DIR", "PYDEVD_DISABLE_FILE_VALIDATION"):
        monkeypatch.setenv(variable, os.environ.get(variable, ""))
    (tmp_path / "notebooks").mkdir()
    return tmp_path


def write_notebook(folder: Path, name: str, body: str) -> None:
    header = '# %% tags=["parameters"]\nscale = "laptop"\n\n'
    (folder / "notebooks" / f"{name}.py").write_text(header + body)


def test_runner_skips_an_unchanged_notebook_and_reruns_a_changed_one(scratch: Path) -> None:
    write_notebook(scratch, "tiny", "# %%\nprint(scale)\n")
    run = lambda: book.run_notebook(  # noqa: E731
        "tiny", "ci", scratch / "out", notebooks_dir=scratch / "notebooks", package="fixed"
    )
    first, second = run(), run()
    assert (first.cached, second.cached) == (False, True)
    outputs = [o for c in nbformat.read(first.output, as_version=4).cells for o in c.get("outputs", [])]
    assert any(o.get("text") == "ci\n" for o in outputs), "the scale was not injected"
    cells = nbformat.read(first.output, as_version=4).cells
    injected = [c for c in cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and all("hide-input" in c.metadata["tags"] for c in injected), "injected parameters not folded"
    write_notebook(scratch, "tiny", "# %%\nprint(scale, 2)\n")
    assert run().cached is False


def test_runner_names_the_failing_notebook_and_cell(scratch: Path) -> None:
    write_notebook(scratch, "broken", "# %%\nx = 1\n\n# %%\nraise RuntimeError('boom in the test')\n")
    with pytest.raises(book.NotebookFailed) as failure:
        book.run_notebook("broken", "ci", scratch / "out", notebooks_dir=scratch / "notebooks")
    message = str(failure.value)
    assert "notebook broken failed in cell" in message
    assert "broken.py:8" in message  # the failing cell's first line in the jupytext source
    assert "RuntimeError: boom in the test" in message
    assert not (scratch / "out" / "broken.key").exists(), "a failed run must not be cached"


MARKERS = ("NBVAL_", "fmt: skip", "SPEC")


@pytest.mark.parametrize("name", NAMES)
def test_no_internal_marker_reaches_the_reader(name: str) -> None:
    """Chapters mark nbval cells with tags, not comments, and cite the book, not outside documents."""
    source = book.source_path(name).read_text()
    found = [marker for marker in MARKERS if marker in source]
    assert not found, f"{name}: internal marker(s) {found} would be rendered"


@pytest.mark.parametrize("name", NAMES)
def test_plotting_and_setup_code_is_folded_away(name: str) -> None:
    """Code that only plots or sets up is behind a toggle (or removed): prose, then the figure."""
    nb = book.read_notebook(book.source_path(name))
    folded = {"hide-input", "hide-cell", "remove-input", "remove-cell"}
    for cell in nb.cells:
        tags = set(cell.metadata.get("tags", []))
        if cell.cell_type == "code" and "plt.subplots(" in cell.source:
            assert tags & folded, f"{name}: a plotting cell is shown in full:\n{cell.source[:200]}"
        if cell.cell_type == "code" and cell.source.lstrip().startswith(("import ", "from ")):
            assert tags & folded, f"{name}: an import cell is shown in full:\n{cell.source[:200]}"


def test_runner_prints_a_chapters_progress_but_keeps_it_out_of_the_page(scratch: Path, capsys) -> None:
    body = (
        "# %%\nimport os\n"
        "with open(os.environ['DAS_BOOK_PROGRESS'], 'a') as stream:\n"
        "    stream.write('run 1 of 2: epoch 3\\n')\n"
        "print('in the page')\n"
    )
    write_notebook(scratch, "talks", body)
    result = book.run_notebook("talks", "ci", scratch / "out", notebooks_dir=scratch / "notebooks", package="x")
    assert "run 1 of 2: epoch 3" in capsys.readouterr().out
    outputs = json.dumps([cell.get("outputs", []) for cell in nbformat.read(result.output, as_version=4).cells])
    assert "in the page" in outputs and "run 1 of 2" not in outputs


def test_new_stored_measurements_make_the_chapters_run_again(tmp_path: Path, monkeypatch) -> None:
    """A chapter that reads measurements/ must not be kept when they change."""
    monkeypatch.setattr(book, "ROOT", tmp_path)
    (tmp_path / "measurements" / "cpu").mkdir(parents=True)
    before = book.inputs_digest()
    (tmp_path / "measurements" / "cpu" / "seed0.json").write_text("{}")
    assert book.inputs_digest() != before


@pytest.mark.parametrize("name", NAMES)
def test_knobs_passed_to_training_keep_the_setting_name(name: str) -> None:
    """One vocabulary: a knob handed to a training setting (``TrainConfig`` field or profile override)
    is called what the setting is called, as on the command line; a knob for a chapter's second
    dataset carries that dataset's name as a prefix (``synthetic_epochs``)."""
    from das.config import TrainConfig
    from das.data import DATASETS

    settings = {field.name for field in dataclasses.fields(TrainConfig)}
    knobs = set(parameters_cell(name))
    nb = book.read_notebook(book.source_path(name))
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and not c.source.startswith("%"))
    renamed = {
        f"{keyword.arg}={keyword.value.id}"
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg in settings and isinstance(keyword.value, ast.Name)
        if keyword.value.id in knobs and keyword.value.id != keyword.arg and keyword.value.id not in settings
        if keyword.value.id.split("_")[0] not in DATASETS
    }
    assert not renamed, f"{name}: knobs renamed on their way to training: {sorted(renamed)}"
