"""Fetch the MedMNIST3D files, verified by MD5: ``python -m das.data.fetch --book``.

For each requested file (``{flag}.npz`` at 28^3, ``{flag}_64.npz`` at 64^3) in ``--root`` (default
:func:`das.data.medmnist3d.default_root`), with URL and MD5 from ``medmnist.INFO`` (``url``/``MD5``,
``url_64``/``MD5_64``):

- present with the right MD5: left alone, nothing downloaded;
- present with another MD5: one line naming it, the expected and the actual MD5; moved aside to
  ``<file>.md5-mismatch`` (left with ``--check``), never used; exit status 2 (a rerun downloads a
  fresh copy);
- missing: one line says what is downloaded, its size (the server's Content-Length) and where it goes;
  one progress bar; the bytes go to a temporary file in the target folder, are checked against the
  MD5, and only then moved into place (``os.replace``); a wrong MD5 deletes them, as above;
- missing and not downloadable (offline, server error) or ``--check`` (never uses the network): one
  line per file naming it, the folder, its URL and MD5; exit status 2.

``--book`` asks for what the book reads (AdrenalMNIST3D at 28 and 64); ``--datasets ... --sizes ...``
for others. ``--mirror URL`` downloads ``URL/{file}`` instead (a copy of the files elsewhere; MD5s stay
medmnist's). Errors are one line on stderr, exit status 2, no traceback. :func:`ensure_file` is also
the download of ``load_medmnist3d(download=True)``, so there is one download path.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import medmnist
from tqdm import tqdm

from das.data.medmnist3d import (
    SIZES,
    CorruptDatasetError,
    DatasetNotFoundError,
    default_root,
    medmnist_filename,
    medmnist_flag,
)

PROG = "das.data.fetch"
BOOK_DATASETS: tuple[str, ...] = ("adrenalmnist3d",)  # the book reads AdrenalMNIST3D ...
BOOK_SIZES: tuple[int, ...] = (28, 64)  # ... at both sizes
CHUNK = 1 << 16
TIMEOUT_S = 30


def source(flag: str, size: int, mirror: str | None = None) -> tuple[str, str]:
    """``(url, md5)`` of ``flag`` at ``size`` from ``medmnist.INFO``; the URL is ``mirror/{file}`` when given."""
    suffix = "" if size == 28 else f"_{size}"
    info = medmnist.INFO[flag]
    url = f"{mirror.rstrip('/')}/{medmnist_filename(flag, size)}" if mirror else info[f"url{suffix}"]
    return url, info[f"MD5{suffix}"]


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def missing_message(path: Path, url: str, md5: str, reason: str) -> str:
    return f"{path.name} missing in {path.parent} ({reason}): get it from {url} (MD5 {md5}) and put it there"


def download(url: str, md5: str, path: Path) -> None:
    """Download ``url`` to ``path`` through a temporary file beside it, moved into place only when its MD5
    is ``md5``. ``DatasetNotFoundError`` when the download fails, ``CorruptDatasetError`` (the bytes
    deleted) when the MD5 differs; either way nothing is left at ``path``."""
    part: Path | None = None
    try:
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                length = response.headers.get("Content-Length", "")
                total = int(length) if length.isdigit() else None
                size = f"{total / 1e6:.1f} MB" if total is not None else "size unknown"
                print(f"downloading {path.name} ({size}) from {url} into {path.parent}", flush=True)
                path.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as out:
                    part = Path(out.name)
                    with tqdm(total=total, unit="B", unit_scale=True, desc=path.name) as bar:
                        while chunk := response.read(CHUNK):
                            out.write(chunk)
                            bar.update(len(chunk))
        except (OSError, ValueError, http.client.HTTPException) as error:
            raise DatasetNotFoundError(missing_message(path, url, md5, f"download failed: {error}")) from None
        actual = md5sum(part)
        if actual != md5:
            raise CorruptDatasetError(
                f"{path.name} downloaded from {url} has MD5 {actual}, expected {md5}: deleted, not used"
            )
        os.replace(part, path)
    finally:
        if part is not None:
            part.unlink(missing_ok=True)


def ensure_file(flag: str, size: int, root: Path, *, check: bool = False, mirror: str | None = None) -> Path:
    """``root/{file}`` once its MD5 matches ``medmnist.INFO``, downloaded when missing unless ``check``.

    Raises ``DatasetNotFoundError`` (missing, not downloaded) or ``CorruptDatasetError`` (wrong MD5,
    one line). A file already there with another MD5 is moved aside to ``<file>.md5-mismatch`` (unless
    ``check``), never deleted: the folder may be shared with other projects.
    """
    path = root / medmnist_filename(flag, size)
    url, md5 = source(flag, size, mirror)
    if path.is_file():
        actual = md5sum(path)
        if actual == md5:
            return path
        note = "move it away and fetch it again"
        if not check:
            aside = path.with_name(path.name + ".md5-mismatch")
            try:
                path.replace(aside)
                note = f"moved to {aside}; run again to download a fresh copy"
            except OSError as error:
                note = f"could not move it ({error.strerror}); move it away and fetch it again"
        raise CorruptDatasetError(f"{path} has MD5 {actual}, expected {md5}: not used, {note}")
    if check:
        raise DatasetNotFoundError(missing_message(path, url, md5, "--check does not download"))
    download(url, md5, path)
    return path


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line, not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Fetch the MedMNIST3D npz files, verified by MD5.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--book", action="store_true", help="the files the book reads (AdrenalMNIST3D, 28 and 64)")
    what.add_argument("--datasets", nargs="+", metavar="NAME", help="MedMNIST3D names (adrenalmnist3d or adrenal)")
    parser.add_argument("--sizes", nargs="+", type=int, choices=SIZES, help="sizes for --datasets (default: all)")
    parser.add_argument("--root", help="folder of the npz files (default: das.data.medmnist3d.default_root())")
    parser.add_argument("--check", action="store_true", help="verify only; never download")
    parser.add_argument("--mirror", metavar="URL", help="download URL/{file} instead of medmnist's URL")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit status (0 or 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.book and args.sizes:
        parser.error("--sizes goes with --datasets; --book always means sizes 28 and 64")
    try:
        flags = list(BOOK_DATASETS) if args.book else [medmnist_flag(name) for name in args.datasets]
    except ValueError as error:
        parser.error(str(error))
    sizes = list(BOOK_SIZES) if args.book else args.sizes or list(SIZES)
    errors: list[str] = []
    verified: list[Path] = []
    try:
        root = Path(args.root).expanduser() if args.root else default_root()
        for flag in flags:
            for size in sizes:
                try:
                    verified.append(ensure_file(flag, size, root, check=args.check, mirror=args.mirror))
                except (DatasetNotFoundError, CorruptDatasetError) as error:
                    errors.append(str(error))
    except DatasetNotFoundError as error:  # no default folder at all
        errors.append(str(error))
    for message in errors:
        print(f"{PROG}: error: {message}", file=sys.stderr)
    if verified and not errors:
        print(f"verified (MD5) in {root}: {', '.join(path.name for path in verified)}")
    return 2 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
