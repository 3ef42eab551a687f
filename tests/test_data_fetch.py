"""das.data.fetch and default_root(), offline: small MedMNIST-format files served from 127.0.0.1, closed
ports for "no network", and a copy of the package for a clone with no data beside it."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import medmnist
import pytest

import das.data.fetch
import das.data.medmnist3d
from das.data import load_medmnist3d
from das.data.fetch import main
from das.data.medmnist3d import default_root

REPO = Path(__file__).parents[1]
BOOK_FILES = ("adrenalmnist3d.npz", "adrenalmnist3d_64.npz")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    folder: Path  # what it serves
    requests: list[str] = field(default_factory=list)  # paths asked for, in order


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """An HTTP server on 127.0.0.1 (in a thread) serving ``tmp_path/served``; it records each request."""
    for variable in PROXY_VARIABLES:  # urllib must talk to 127.0.0.1 itself
        monkeypatch.delenv(variable, raising=False)
    served = Server("", tmp_path / "served")
    served.folder.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(served.folder), **kwargs)

        def do_GET(self) -> None:
            served.requests.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:  # keep pytest's output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{httpd.server_port}"
    yield served
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def point_info(monkeypatch: pytest.MonkeyPatch, size: int, url: str, md5: str | None = None) -> None:
    """Make ``medmnist.INFO`` give ``url`` (and ``md5``) for AdrenalMNIST3D at ``size``."""
    suffix = "" if size == 28 else f"_{size}"
    monkeypatch.setitem(medmnist.INFO["adrenalmnist3d"], f"url{suffix}", url)
    if md5 is not None:
        monkeypatch.setitem(medmnist.INFO["adrenalmnist3d"], f"MD5{suffix}", md5)


def serve_book_files(server: Server, monkeypatch: pytest.MonkeyPatch, medmnist_writer) -> dict[str, str]:
    """Serve small AdrenalMNIST3D files at 28 and 64; ``medmnist.INFO`` points at them. Name -> MD5."""
    md5s = {}
    for size, name in zip((28, 64), BOOK_FILES, strict=True):
        medmnist_writer(server.folder / name, "adrenalmnist3d", size=size, seed=size)
        md5s[name] = md5_of(server.folder / name)
        point_info(monkeypatch, size, f"{server.url}/{name}?download=1", md5s[name])
    return md5s


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("das.data.fetch: error:")]


def test_real_md5s_are_medmnists() -> None:
    """The MD5s of the official AdrenalMNIST3D files, as medmnist.INFO gives them (measured on the files)."""
    info = medmnist.INFO["adrenalmnist3d"]
    assert (info["MD5"], info["MD5_64"]) == ("bbd3c5a5576322bc4cdfea780653b1ce", "17721accfe9fb005146a47d33bc54b2f")


def test_real_files_verify_offline(medmnist_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("no download expected"))
    assert main(["--book", "--root", str(medmnist_dir)]) == 0
    assert "verified (MD5)" in capsys.readouterr().out


def test_download_verifies_places_and_does_not_repeat(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, medmnist_writer
) -> None:
    md5s = serve_book_files(server, monkeypatch, medmnist_writer)
    root = tmp_path / "data"
    assert main(["--book", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in root.iterdir()) == sorted(BOOK_FILES)  # no temporary file left
    assert {name: md5_of(root / name) for name in BOOK_FILES} == md5s
    announced = [line for line in out.splitlines() if line.startswith("downloading")]
    assert len(announced) == 2 and all("MB)" in line and str(root) in line for line in announced)
    assert server.requests == [f"/{name}?download=1" for name in BOOK_FILES]
    assert load_medmnist3d("adrenal", "val", size=64, root=root).images.shape[1:] == (64, 1, 64, 64)

    assert main(["--book", "--root", str(root)]) == 0  # verified in place: nothing downloaded
    assert len(server.requests) == 2 and "downloading" not in capsys.readouterr().out

    # load_medmnist3d(download=True) takes the same verified path.
    other = tmp_path / "other"
    assert len(load_medmnist3d("adrenal", "test", root=other, download=True)) == 4
    assert (
        server.requests[2:] == ["/adrenalmnist3d.npz?download=1"]
        and md5_of(other / BOOK_FILES[0]) == md5s[BOOK_FILES[0]]
    )


def test_downloaded_file_with_wrong_md5_is_refused_and_deleted(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, medmnist_writer
) -> None:
    md5s = serve_book_files(server, monkeypatch, medmnist_writer)
    expected = "0" * 32
    point_info(monkeypatch, 64, f"{server.url}/{BOOK_FILES[1]}", expected)
    root = tmp_path / "data"
    assert main(["--book", "--root", str(root)]) == 2
    [line] = error_lines(capsys.readouterr().err)
    assert all(part in line for part in (BOOK_FILES[1], expected, md5s[BOOK_FILES[1]], "deleted"))
    assert [p.name for p in root.iterdir()] == [BOOK_FILES[0]]  # the bad bytes are gone, the good file stays
    with pytest.raises(das.data.CorruptDatasetError, match=expected):  # the library path refuses it too
        load_medmnist3d("adrenal", "val", size=64, root=tmp_path / "lib", download=True)
    assert not list((tmp_path / "lib").iterdir())


def test_present_file_with_wrong_md5_is_reported_then_moved_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, medmnist_writer
) -> None:
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("no download expected"))
    root = tmp_path / "data"
    bad = root / "nodulemnist3d.npz"
    medmnist_writer(bad, "nodulemnist3d")
    expected = medmnist.INFO["nodulemnist3d"]["MD5"]
    assert main(["--datasets", "nodule", "--sizes", "28", "--root", str(root), "--check"]) == 2
    [line] = error_lines(capsys.readouterr().err)
    assert all(part in line for part in (str(bad), expected, md5_of(bad))) and bad.exists()  # --check keeps it
    assert main(["--datasets", "nodule", "--sizes", "28", "--root", str(root)]) == 2
    [line] = error_lines(capsys.readouterr().err)
    aside = bad.with_name(bad.name + ".md5-mismatch")
    assert "moved to" in line and not bad.exists() and aside.exists()  # never deleted: the folder may be shared


def test_offline_names_missing_files_urls_and_md5s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    for variable in PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    port = closed_port()
    for size, name in zip((28, 64), BOOK_FILES, strict=True):
        point_info(monkeypatch, size, f"http://127.0.0.1:{port}/{name}")
    root = tmp_path / "empty"
    assert main(["--book", "--root", str(root)]) == 2
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert len(lines) == 2 and "Traceback" not in captured.err
    info = medmnist.INFO["adrenalmnist3d"]
    for line, name, suffix in zip(lines, BOOK_FILES, ("", "_64"), strict=True):
        assert all(part in line for part in (name, str(root), info[f"url{suffix}"], info[f"MD5{suffix}"]))
    assert not root.exists() or not list(root.iterdir())


def test_check_never_uses_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("--check must not download"))
    assert main(["--book", "--check", "--root", str(tmp_path)]) == 2
    lines = error_lines(capsys.readouterr().err)
    info = medmnist.INFO["adrenalmnist3d"]
    assert len(lines) == 2
    assert all(part in lines[1] for part in (BOOK_FILES[1], str(tmp_path), info["url_64"], info["MD5_64"]))


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        ([], "one of the arguments --book --datasets is required"),
        (["--datasets", "lung"], "unknown MedMNIST3D name 'lung'"),
        (["--datasets", "adrenal", "--sizes", "32"], "invalid choice: 32"),
        (["--book", "--sizes", "28"], "--sizes goes with --datasets"),
    ],
)
def test_bad_arguments_one_line_status_2(argv: list[str], pattern: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and pattern in err


def test_default_root_env_then_sibling_then_medmnist_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sibling, home = tmp_path / "shared" / "data" / "medmnist", tmp_path / "home" / ".medmnist"
    monkeypatch.setattr(das.data.medmnist3d, "SIBLING_DATA_DIR", sibling)
    monkeypatch.setattr(medmnist.info, "DEFAULT_ROOT", str(home))
    monkeypatch.setenv("DAS_DATA_DIR", str(tmp_path / "env"))
    sibling.mkdir(parents=True)
    assert default_root() == tmp_path / "env"
    monkeypatch.delenv("DAS_DATA_DIR")
    assert default_root() == sibling
    sibling.rmdir()
    assert default_root() == home


def test_sibling_folder_is_beside_the_clone() -> None:
    sibling = das.data.medmnist3d.SIBLING_DATA_DIR
    assert sibling == REPO.resolve().parent / "shared" / "data" / "medmnist"


def run_fetch(args: list[str], *, cwd: Path, pythonpath: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """``python -m das.data.fetch ARGS`` with ``$HOME`` at ``home``, no ``$DAS_DATA_DIR`` and no proxy."""
    dropped = ("DAS_DATA_DIR", "PYTHONPATH", *PROXY_VARIABLES)
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(HOME=str(home), PYTHONPATH=str(pythonpath))
    command = [sys.executable, "-m", "das.data.fetch", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_subprocess_offline_one_line_per_missing_file(tmp_path: Path) -> None:
    mirror = f"http://127.0.0.1:{closed_port()}"
    empty = tmp_path / "empty"
    proc = run_fetch(["--book", "--root", str(empty), "--mirror", mirror], cwd=tmp_path, pythonpath=REPO, home=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines == error_lines(proc.stderr) and len(lines) == 2
    info = medmnist.INFO["adrenalmnist3d"]
    for line, name, md5 in zip(lines, BOOK_FILES, (info["MD5"], info["MD5_64"]), strict=True):
        assert all(part in line for part in (f"{mirror}/{name}", md5, str(empty), "download failed"))


def test_fresh_clone_without_data_stops_with_one_line_per_file(tmp_path: Path) -> None:
    """A clone with no data checkout beside it, an empty home, no DAS_DATA_DIR: the book's data check
    names the files, ~/.medmnist, the URLs and MD5s, and fails (the package runs from a copy, so the
    data folder beside this repository is not beside it)."""
    clone, home, cwd = tmp_path / "clone", tmp_path / "home", tmp_path / "work"
    shutil.copytree(REPO / "das", clone / "das", ignore=shutil.ignore_patterns("__pycache__"))
    home.mkdir()
    cwd.mkdir()
    proc = run_fetch(["--book", "--check"], cwd=cwd, pythonpath=clone, home=home)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines == error_lines(proc.stderr) and len(lines) == 2
    info = medmnist.INFO["adrenalmnist3d"]
    for line, name, suffix in zip(lines, BOOK_FILES, ("", "_64"), strict=True):
        assert all(part in line for part in (name, str(home / ".medmnist"), info[f"url{suffix}"], info[f"MD5{suffix}"]))
