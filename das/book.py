"""Run the book's notebooks with papermill and build the HTML with Jupyter Book, without re-executing.

    python -m das.book run --profile quick [--only 03_gumbel ...] [--force]
    python -m das.book build --profile quick [--path-output DIR]
    python -m das.book nbval-refs

The chapters are jupytext ``py:percent`` files in ``notebooks/``; ``_toc.yml`` says which ones make the
book. ``notebooks/parameters.yml`` gives, for each profile (``smallest``: CI and nbval, ``quick``:
``make book``, ``paper``: the full protocol), the parameters passed to each notebook; papermill injects
them after the notebook's ``parameters`` cell, together with ``profile``.

``run`` writes the executed notebooks to ``_build/<profile>/executed/`` and skips a notebook whose key
(a hash of its source, its parameters and every source file of the ``das`` package) has not changed
since it last ran to the end. ``build`` stages ``_config.yml``, ``_toc.yml``, ``book/`` and the
executed notebooks (running what is stale) into ``_build/<profile>/src`` and builds that copy with
``jupyter-book build --all -W --keep-going`` (the config turns execution off, so the HTML shows exactly
the outputs papermill recorded). The HTML lands in ``<path-output>/_build/html``.

Notebooks must not depend on the working directory: papermill runs them from the repository root, nbval
from ``tests/nbval``. Use :data:`ROOT` for paths in the repository. Quote computed numbers in prose with
:func:`glue` (``{glue:text}`name:.2f```), never by typing them. Anything a notebook writes to stderr
(warnings, progress bars) fails the build: silence progress bars, fix warnings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import jupytext
import mathjax
import nbformat
import yaml

from das.provenance import package_digest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = ROOT / "notebooks"
PARAMETERS_FILE = NOTEBOOKS_DIR / "parameters.yml"
TOC_FILE = ROOT / "_toc.yml"
CONFIG_FILE = ROOT / "_config.yml"
BOOK_DIR = ROOT / "book"
BUILD_DIR = ROOT / "_build"
NBVAL_DIR = ROOT / "tests" / "nbval"
PROFILES: tuple[str, ...] = ("smallest", "quick", "paper")
KERNEL_NAME = "python3"
KERNELSPEC = {"name": KERNEL_NAME, "display_name": "Python 3 (ipykernel)", "language": "python"}
# Tag nbval reads (under --nbval-lax) to compare a cell's output with the stored reference.
NBVAL_CHECK = "# NBVAL_CHECK_OUTPUT"


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


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    return profile


def load_profiles(path: Path = PARAMETERS_FILE) -> dict[str, dict[str, dict[str, object]]]:
    """``{profile: {notebook: {parameter: value}}}`` from ``parameters.yml`` (missing entries: ``{}``)."""
    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - set(PROFILES))
    if unknown:
        raise ValueError(f"{path}: unknown profile(s) {unknown}; valid profiles: {', '.join(PROFILES)}")
    return {profile: dict(data.get(profile) or {}) for profile in PROFILES}


def notebook_parameters(name: str, profile: str, profiles: dict | None = None) -> dict[str, object]:
    """The parameters papermill injects into ``name`` for ``profile``: ``profile`` plus the overrides."""
    profiles = load_profiles() if profiles is None else profiles
    return {"profile": check_profile(profile), **(profiles[profile].get(name) or {})}


def source_path(name: str, notebooks_dir: Path = NOTEBOOKS_DIR) -> Path:
    path = notebooks_dir / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"notebook {name!r} not found: no file {path}")
    return path


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """The jupytext source as a notebook, with the kernel every run uses."""
    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    return nb


def parameterized(name: str, profile: str, notebooks_dir: Path = NOTEBOOKS_DIR) -> nbformat.NotebookNode:
    """The notebook exactly as papermill will execute it for ``profile`` (parameters injected)."""
    import papermill

    return papermill.execute_notebook(
        read_notebook(source_path(name, notebooks_dir)),
        None,
        parameters=notebook_parameters(name, profile),
        kernel_name=KERNEL_NAME,
        prepare_only=True,
    )


def cache_key(source: Path, parameters: dict[str, object], package: str) -> str:
    digest = hashlib.sha256()
    digest.update(source.read_bytes())
    digest.update(json.dumps(parameters, sort_keys=True).encode())
    digest.update(package.encode())
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


def run_notebook(
    name: str,
    profile: str,
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
    parameters = notebook_parameters(name, profile)
    key = cache_key(source, parameters, package_digest() if package is None else package)
    out_dir.mkdir(parents=True, exist_ok=True)
    output, key_file = out_dir / f"{name}.ipynb", out_dir / f"{name}.key"
    if not force and output.is_file() and key_file.is_file() and key_file.read_text() == key:
        return RunResult(name, output, cached=True)
    key_file.unlink(missing_ok=True)
    kernel_environment()
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
    key_file.write_text(key)
    return RunResult(name, output, cached=False)


def glue(name: str, value: object, display: bool = False) -> None:
    """myst-nb's ``glue`` for values quoted in prose; numpy and torch scalars become Python numbers.

    ``{glue:text}`name:.2f``` formats the stored ``text/plain`` repr, and numpy 2 writes it as
    ``np.float64(0.5)``, which myst-nb cannot parse: a build warning, so an error under ``-W``.
    """
    from myst_nb import glue as myst_glue

    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()
    myst_glue(name, value, display=display)


def executed_dir(profile: str) -> Path:
    return BUILD_DIR / check_profile(profile) / "executed"


def run_all(
    profile: str, only: list[str] | None = None, force: bool = False, toc_file: Path = TOC_FILE
) -> list[RunResult]:
    """Run the toc's notebooks (or ``only`` those), every one even after a failure; then report."""
    names = toc_notebooks(toc_file)
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise ValueError(f"--only: unknown notebook(s) {unknown}; notebooks in _toc.yml: {', '.join(names)}")
    package = package_digest()
    results, failures = [], []
    for name in [n for n in names if not only or n in only]:
        print(f"[das.book] {profile}: {name} ...", flush=True)
        try:
            result = run_notebook(name, profile, executed_dir(profile), force=force, package=package)
        except NotebookFailed as failure:
            failures.append(str(failure))
            print(f"[das.book] {name}: FAILED", flush=True)
            continue
        results.append(result)
        print(f"[das.book] {name}: {'unchanged, kept' if result.cached else 'executed'} -> {result.output}")
    if failures:
        raise NotebookFailed(f"{len(failures)} notebook(s) failed:\n" + "\n".join(failures))
    return results


def build(profile: str, path_output: Path = ROOT, force: bool = False) -> Path:
    """Stage the sources in ``_build/<profile>/src``, run the staged toc's stale notebooks, copy the
    executed notebooks in, and build the HTML with warnings as errors; return ``index.html``.

    The toc is copied first and read from the copy, so the book is built from exactly the notebooks
    that ran even if ``_toc.yml`` changes meanwhile.
    """
    src = BUILD_DIR / check_profile(profile) / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for path in (CONFIG_FILE, TOC_FILE):
        shutil.copy2(path, src / path.name)
    results = run_all(profile, force=force, toc_file=src / TOC_FILE.name)
    shutil.copytree(BOOK_DIR, src / BOOK_DIR.name)
    # MathJax served from the book itself (the pinned `mathjax` package ships it), so the math renders
    # offline too; _config.yml points Sphinx's mathjax_path at this copy.
    shutil.copytree(Path(mathjax.__file__).parent / "static" / "mathjax" / "es5", src / "_static" / "mathjax")
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
    print(f"[das.book] {profile} book: {index}")
    return index


def reference_notebook(executed: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """An nbval reference: outputs kept only where nbval compares them, run metadata dropped.

    nbval (``--nbval-lax``) compares only cells marked ``# NBVAL_CHECK_OUTPUT``; the other outputs (plots,
    timings) would only bloat the repository and churn on every refresh.
    """
    nb = nbformat.from_dict(json.loads(json.dumps(executed)))
    nb.metadata.pop("papermill", None)
    for number, cell in enumerate(nb.cells):
        cell.id = f"cell-{number}"  # jupytext draws random ids; fixed ones keep refreshes diff-free
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code" and NBVAL_CHECK not in cell.source:
            cell.outputs = []
    return nb


def write_nbval_refs(only: list[str] | None = None, force: bool = False) -> list[Path]:
    """Run the notebooks in the ``smallest`` profile and store them as ``tests/nbval/<name>.ipynb``."""
    written = []
    for result in run_all("smallest", only, force):
        path = NBVAL_DIR / f"{result.name}.ipynb"
        nbformat.write(reference_notebook(nbformat.read(result.output, as_version=4)), path)
        written.append(path)
        print(f"[das.book] nbval reference: {path}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m das.book", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute the toc's notebooks with papermill (cached)")
    build_cmd = commands.add_parser("build", help="run what is stale, then build the HTML")
    refs = commands.add_parser("nbval-refs", help="rewrite tests/nbval/*.ipynb (smallest profile)")
    for sub in (run, build_cmd):
        sub.add_argument("--profile", default="quick", choices=PROFILES)
    for sub in (run, refs):
        sub.add_argument("--only", nargs="+", metavar="NAME", help="notebook names, e.g. 03_gumbel")
    for sub in (run, build_cmd, refs):
        sub.add_argument("--force", action="store_true", help="execute even if nothing changed")
    build_cmd.add_argument("--path-output", type=Path, default=ROOT, help="the HTML goes to PATH_OUTPUT/_build/html")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            run_all(args.profile, args.only, args.force)
        elif args.command == "build":
            build(args.profile, args.path_output.resolve(), args.force)
        else:
            write_nbval_refs(args.only, args.force)
    except (NotebookFailed, ValueError) as error:
        print(f"[das.book] error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
