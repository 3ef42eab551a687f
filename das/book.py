"""Run the book's chapters with papermill and build the HTML with Jupyter Book, without re-executing.

    python -m das.book run --scale laptop [--only 03_gumbel ...] [--force]
    python -m das.book build --scale laptop [--path-output DIR]
    python -m das.book nbval-refs

The chapters are jupytext ``py:percent`` files in ``notebooks/``; ``_toc.yml`` says which ones make the
book. A **scale** is a set of chapter parameters, from ``notebooks/parameters.yml``: ``ci`` (CI and
the nbval references: seconds per chapter), ``laptop`` (``make book``: minutes on a CPU) and ``gpu``
(the full protocol). papermill injects them after a chapter's ``parameters`` cell, with ``scale``.
A scale is not a sweep profile (:mod:`das.profiles`): a chapter's ``profile`` knob names the profile it
trains, and the scale may set it.

``run`` writes the executed chapters to ``_build/<scale>/executed/`` and skips one whose key (a hash
of its source, its parameters, every source file of the ``das`` package and the stored runs under
``measurements/``) has not changed since it last ran to the end. ``build`` first checks the data the chapters read (:mod:`das.data.fetch`), then
stages ``_config.yml``, ``_toc.yml``, ``book/`` and the executed chapters (running what is stale) into
``_build/<scale>/src`` and builds that copy with ``jupyter-book build --all -W --keep-going`` (the
config turns execution off, so the HTML shows exactly the outputs papermill recorded). While a chapter
trains, its progress (run i of N, epoch, time left) is printed here, not into the page.

Anything a chapter writes to stderr (warnings, progress bars) fails the build: silence progress bars,
fix warnings. Chapter helpers live in :mod:`das.chapters`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jupytext
import mathjax
import nbformat
import yaml

from das.chapters import EXECUTOR_ENV, PROGRESS_ENV, ROOT, SCALES
from das.provenance import package_digest

NOTEBOOKS_DIR = ROOT / "notebooks"
PARAMETERS_FILE = NOTEBOOKS_DIR / "parameters.yml"
TOC_FILE = ROOT / "_toc.yml"
CONFIG_FILE = ROOT / "_config.yml"
BOOK_DIR = ROOT / "book"
BUILD_DIR = ROOT / "_build"
NBVAL_DIR = ROOT / "tests" / "nbval"
KERNEL_NAME = "python3"
KERNEL_METADATA = {"name": KERNEL_NAME, "display_name": "Python 3 (ipykernel)", "language": "python"}
# Cell tag nbval reads (under --nbval-lax) to compare a cell's output with the stored reference.
NBVAL_CHECK = "nbval-check-output"


class NotebookFailed(RuntimeError):
    """A notebook raised an error; the message names the notebook, the cell and the error."""


@dataclass(frozen=True)
class RunResult:
    name: str
    output: Path
    cached: bool


def toc_notebooks(toc_file: Path = TOC_FILE) -> list[str]:
    """Names (``02_why_subsample``) of the toc entries under ``notebooks/``, in book order."""
    toc = yaml.safe_load(toc_file.read_text())
    files: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    files.append(node[key])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return [Path(f).stem for f in files if Path(f).parent.name == "notebooks"]


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid scales: {', '.join(SCALES)}")
    return scale


def load_scales(path: Path = PARAMETERS_FILE) -> dict[str, dict[str, dict[str, object]]]:
    """``{scale: {notebook: {parameter: value}}}`` from ``parameters.yml`` (missing entries: ``{}``)."""
    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - set(SCALES))
    if unknown:
        raise ValueError(f"{path}: unknown scale(s) {unknown}; valid scales: {', '.join(SCALES)}")
    return {scale: dict(data.get(scale) or {}) for scale in SCALES}


def notebook_parameters(name: str, scale: str, scales: dict | None = None) -> dict[str, object]:
    """The parameters papermill injects into ``name`` at ``scale``: ``scale`` plus the overrides."""
    scales = load_scales() if scales is None else scales
    return {"scale": check_scale(scale), **(scales[scale].get(name) or {})}


def source_path(name: str, notebooks_dir: Path = NOTEBOOKS_DIR) -> Path:
    path = notebooks_dir / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"notebook {name!r} not found: no file {path}")
    return path


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """The jupytext source as a notebook, with the kernel every run uses."""
    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = dict(KERNEL_METADATA)
    return nb


def parameterized(name: str, scale: str, notebooks_dir: Path = NOTEBOOKS_DIR) -> nbformat.NotebookNode:
    """The notebook exactly as papermill will execute it at ``scale`` (parameters injected)."""
    import papermill

    return papermill.execute_notebook(
        read_notebook(source_path(name, notebooks_dir)),
        None,
        parameters=notebook_parameters(name, scale),
        kernel_name=KERNEL_NAME,
        prepare_only=True,
    )


def cache_key(source: Path, parameters: dict[str, object], package: str) -> str:
    digest = hashlib.sha256()
    digest.update(source.read_bytes())
    digest.update(json.dumps(parameters, sort_keys=True).encode())
    digest.update(package.encode())
    return digest.hexdigest()


def inputs_digest() -> str:
    """What every chapter's output may depend on besides its source and parameters: the ``das``
    sources and the stored runs under ``measurements/``."""
    digest = hashlib.sha256(package_digest().encode())
    measurements = ROOT / "measurements"
    for path in sorted(measurements.rglob("*")) if measurements.is_dir() else []:
        if path.is_file():
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def kernel_environment() -> None:
    """Environment the kernels inherit: the package importable, no debugger noise (the data folder is
    ``das.data.medmnist3d.default_root()`` in the kernel too)."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    # ipykernel's debugger otherwise warns about frozen modules on every kernel start.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def _failure_message(name: str, source: Path, error: Exception, output: Path) -> str:
    """One paragraph naming the notebook, the cell (and its line in the jupytext source), the error."""
    cell_source = getattr(error, "source", "") or ""
    first = next((line for line in cell_source.splitlines() if line.strip()), "")
    text = source.read_text().splitlines()
    line = next((i + 1 for i, t in enumerate(text) if first and t == first), None)
    where = f"{source.relative_to(ROOT) if source.is_relative_to(ROOT) else source}"
    where += f":{line}" if line else ""
    return (
        f"notebook {name} failed in cell [{getattr(error, 'exec_count', '?')}] ({where}: {first!r})\n"
        f"  {getattr(error, 'ename', type(error).__name__)}: {getattr(error, 'evalue', error)}\n"
        f"  full traceback in the executed notebook: {output}"
    )


def _relay_progress(path: Path, done: threading.Event) -> None:
    """Print the lines a chapter's sweeps append to ``path`` (see :mod:`das.chapters`) until ``done``."""
    with open(path) as stream:
        while True:
            line = stream.readline()
            if line:
                print(f"[das.book]   {line.rstrip()}", flush=True)
            elif done.is_set():
                return
            else:
                time.sleep(0.2)


def run_notebook(
    name: str,
    scale: str,
    out_dir: Path,
    *,
    force: bool = False,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    package: str | None = None,
) -> RunResult:
    """Execute one notebook with papermill into ``out_dir/<name>.ipynb``, unless its key is unchanged.

    Raises :class:`NotebookFailed` when a cell raises; the partly executed notebook stays on disk (with
    the traceback) and its key is removed, so the next run executes it again.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = source_path(name, notebooks_dir)
    parameters = notebook_parameters(name, scale)
    key = cache_key(source, parameters, inputs_digest() if package is None else package)
    out_dir.mkdir(parents=True, exist_ok=True)
    output, key_file = out_dir / f"{name}.ipynb", out_dir / f"{name}.key"
    if not force and output.is_file() and key_file.is_file() and key_file.read_text() == key:
        return RunResult(name, output, cached=True)
    key_file.unlink(missing_ok=True)
    kernel_environment()
    with tempfile.TemporaryDirectory() as scratch:
        progress = Path(scratch) / "progress.log"
        progress.touch()
        os.environ[PROGRESS_ENV] = str(progress)
        done = threading.Event()
        relay = threading.Thread(target=_relay_progress, args=(progress, done), daemon=True)
        relay.start()
        try:
            papermill.execute_notebook(
                read_notebook(source),
                str(output),
                parameters=parameters,
                kernel_name=KERNEL_NAME,
                progress_bar=False,
                cwd=str(ROOT),
            )
        except PapermillExecutionError as error:
            raise NotebookFailed(_failure_message(name, source, error, output)) from None
        except Exception as error:  # noqa: BLE001 -- a dead kernel, a timeout: this chapter fails, the rest run
            raise NotebookFailed(f"notebook {name} did not run to the end: {type(error).__name__}: {error}") from None
        finally:
            done.set()
            relay.join()
            os.environ.pop(PROGRESS_ENV, None)
    fold_injected_parameters(output)
    key_file.write_text(key)
    return RunResult(name, output, cached=False)


def fold_injected_parameters(path: Path) -> None:
    """Fold papermill's cell of injected parameters behind a toggle, as the parameters cell is."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            cell.metadata["tags"] = [*tags, "hide-input"]
    nbformat.write(nb, path)


def executed_dir(scale: str) -> Path:
    return BUILD_DIR / check_scale(scale) / "executed"


def run_all(
    scale: str, only: list[str] | None = None, force: bool = False, toc_file: Path = TOC_FILE
) -> list[RunResult]:
    """Run the toc's notebooks (or ``only`` those), every one even after a failure; then report."""
    names = toc_notebooks(toc_file)
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise ValueError(f"--only: unknown notebook(s) {unknown}; notebooks in _toc.yml: {', '.join(names)}")
    package = inputs_digest()
    results, failures = [], []
    chosen = [n for n in names if not only or n in only]
    for number, name in enumerate(chosen, 1):
        print(f"[das.book] {scale} {number}/{len(chosen)}: {name} ...", flush=True)
        start = time.perf_counter()
        try:
            result = run_notebook(name, scale, executed_dir(scale), force=force, package=package)
        except NotebookFailed as failure:
            failures.append(str(failure))
            print(f"[das.book] {name}: FAILED", flush=True)
            continue
        results.append(result)
        how = "unchanged, kept" if result.cached else f"executed in {time.perf_counter() - start:.0f} s"
        print(f"[das.book] {name}: {how} -> {result.output}", flush=True)
    if failures:
        raise NotebookFailed(f"{len(failures)} notebook(s) failed:\n" + "\n".join(failures))
    return results


def check_data() -> None:
    """The data the chapters read must be there and verified (downloaded when missing and online)."""
    from das.data.fetch import main as fetch

    if fetch(["--book"]) != 0:
        raise NotebookFailed("the data the book reads are missing or damaged (see above); no chapter was run")


def build(scale: str, path_output: Path = ROOT, force: bool = False) -> Path:
    """Check the data, stage the sources in ``_build/<scale>/src``, run the staged toc's stale
    notebooks, copy the executed notebooks in, and build the HTML with warnings as errors; return
    ``index.html``.

    The toc is copied first and read from the copy, so the book is built from exactly the notebooks
    that ran even if ``_toc.yml`` changes meanwhile.
    """
    check_data()
    src = BUILD_DIR / check_scale(scale) / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for path in (CONFIG_FILE, TOC_FILE):
        shutil.copy2(path, src / path.name)
    results = run_all(scale, force=force, toc_file=src / TOC_FILE.name)
    shutil.copytree(BOOK_DIR, src / BOOK_DIR.name)
    stage_mathjax(src)
    (src / "notebooks").mkdir()
    for result in results:
        shutil.copy2(result.output, src / "notebooks" / result.output.name)
    command = [
        sys.executable,
        "-c",
        "from jupyter_book.cli.main import main; main()",
        "build",
        str(src),
        "--path-output",
        str(path_output),
        "--all",
        "-W",
        "--keep-going",
    ]
    if subprocess.run(command, check=False).returncode != 0:
        raise NotebookFailed(f"jupyter-book build of {src} failed (warnings are errors; see above)")
    index = path_output / "_build" / "html" / "index.html"
    print(f"[das.book] {scale} book: {index}")
    return index


def stage_mathjax(src: Path) -> None:
    """MathJax served from the book itself (the pinned ``mathjax`` package ships it), so the math
    renders offline. It goes to ``mathjax/`` beside ``_static`` (``html_extra_path``), not into
    ``_static``: Sphinx would add every ``.js`` file there to every page as a script tag."""
    shutil.copytree(Path(mathjax.__file__).parent / "static" / "mathjax" / "es5", src / "_mathjax" / "mathjax")


def reference_notebook(executed: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """An nbval reference: outputs kept only where nbval compares them, run metadata dropped.

    nbval (``--nbval-lax``) compares only cells tagged ``nbval-check-output``; the other outputs
    (plots, timings) would only bloat the repository and churn on every refresh.
    """
    nb = nbformat.from_dict(json.loads(json.dumps(executed)))
    nb.metadata.pop("papermill", None)
    for number, cell in enumerate(nb.cells):
        cell.id = f"cell-{number}"  # jupytext draws random ids; fixed ones keep refreshes diff-free
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code" and NBVAL_CHECK not in cell.metadata.get("tags", []):
            cell.outputs = []
    return nb


def write_nbval_refs(only: list[str] | None = None, force: bool = False) -> list[Path]:
    """Run the notebooks at the ``ci`` scale and store them as ``tests/nbval/<name>.ipynb``."""
    written = []
    for result in run_all("ci", only, force):
        path = NBVAL_DIR / f"{result.name}.ipynb"
        nbformat.write(reference_notebook(nbformat.read(result.output, as_version=4)), path)
        written.append(path)
        print(f"[das.book] nbval reference: {path}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m das.book", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute the toc's notebooks with papermill (cached)")
    build_cmd = commands.add_parser("build", help="check the data, run what is stale, then build the HTML")
    refs = commands.add_parser("nbval-refs", help="rewrite tests/nbval/*.ipynb (ci scale)")
    for sub in (run, build_cmd):
        sub.add_argument("--scale", default="laptop", choices=SCALES, help="chapter parameters (default laptop)")
    for sub in (run, refs):
        sub.add_argument("--only", nargs="+", metavar="NAME", help="notebook names, e.g. 03_gumbel")
    for sub in (run, build_cmd, refs):
        sub.add_argument("--force", action="store_true", help="execute even if nothing changed")
    build_cmd.add_argument("--path-output", type=Path, default=ROOT, help="the HTML goes to PATH_OUTPUT/_build/html")
    for sub in (run, build_cmd):
        group = sub.add_argument_group("where the chapters' training runs go (default: in each chapter's process)")
        group.add_argument("--executor", choices=("local", "ray"), default="local")
        group.add_argument("--address", help="Ray cluster to join (default: a local one sized to this machine)")
        group.add_argument("--workers", type=int, help="runs at a time on Ray")
        group.add_argument("--cpus-per-run", type=int, default=1, help="CPU threads per run on Ray")
        group.add_argument(
            "--gpus-per-run", type=float, default=0.0, help="GPUs per run on Ray (fractional packs runs)"
        )
    args = parser.parse_args(argv)
    if getattr(args, "executor", "local") == "ray":
        options = {
            "executor": "ray",
            "address": args.address,
            "workers": args.workers,
            "cpus_per_run": args.cpus_per_run,
            "gpus_per_run": args.gpus_per_run,
        }
        os.environ[EXECUTOR_ENV] = json.dumps(options)  # the kernels inherit it (das.chapters.sweep)
    try:
        if args.command == "run":
            run_all(args.scale, args.only, args.force)
        elif args.command == "build":
            build(args.scale, args.path_output.resolve(), args.force)
        else:
            write_nbval_refs(args.only, args.force)
    except (NotebookFailed, ValueError) as error:
        print(f"[das.book] error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
