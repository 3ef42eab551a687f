"""das.browser_check: each check catches its fault in a real headless Chromium; clean pages pass.

The fixture pages are tiny HTML files that copy the nesting of sphinx-book-theme (``main.bd-main >
div.bd-content > div.bd-article-container > article.bd-article > section > div.cell > div.cell_output >
div.output.text_html``, which scrolls sideways); the whole folder is checked once per module.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from das import browser_check
from das.browser_check import UsageError, check_book, find_chromium, main, page_problems

try:
    CHROMIUM: str | None = find_chromium()
except UsageError:
    CHROMIUM = None
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium chromium-driver)"
)

# A 1x1 transparent PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
STYLE = """<style>
  body { margin: 0; font-family: sans-serif; }
  .bd-main { display: flex; width: 1024px; margin-left: 256px; }
  .bd-content { width: 1024px; }
  .bd-article-container { width: 752px; }
  .bd-article { padding: 0 32px; }
  .output.text_html { overflow-x: auto; }
</style>"""


def themed_page(body: str) -> str:
    """``body`` placed where a notebook cell's output sits in a sphinx-book-theme page."""
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8">{STYLE}</head><body>
<main id="main-content" class="bd-main"><div class="bd-content"><div class="bd-article-container">
<article class="bd-article"><section><h1>Chapter</h1><div class="cell docutils container">
<div class="cell_output docutils container"><div class="output text_html">{body}</div></div></div>
</section></article></div></div></main></body></html>"""


PAGES = {
    "clean.html": themed_page(
        '<p>Fine.</p><img src="pixel.png" alt="a pixel">'
        "<table><tr><th>method</th><th>AUC</th></tr><tr><td>das</td><td>0.9</td></tr></table>"
        '<div style="display: none"># NBVAL_CHECK_OUTPUT (hidden, so no reader sees it)</div>'
    ),
    "js_error.html": themed_page('<script>throw new Error("x")</script>'),
    "console_error.html": themed_page('<script>console.error("went wrong")</script>'),
    "missing_image.html": themed_page('<img src="nope.png" alt="gone">'),
    "broken_image.html": themed_page('<img src="not_an_image.png" alt="not a PNG">'),
    "wide_table.html": themed_page('<table style="width: 3000px"><tr><td>wide</td></tr></table>'),
    "marker.html": themed_page("<pre># NBVAL_CHECK_OUTPUT\nprint(1)</pre>"),
    "split_header.html": themed_page(
        "<table><thead><tr><th></th><th>AUC</th><th>seeds</th></tr><tr><th>method</th><th></th><th></th></tr>"
        "</thead><tbody><tr><th>das</th><td>0.9</td><td>3</td></tr></tbody></table>"
    ),
    "nested/clean.html": themed_page("<p>A page in a subfolder.</p>"),
    "index.html": '<meta http-equiv="Refresh" content="0; url=clean.html" />',
    "bad_redirect.html": '<meta http-equiv="Refresh" content="0; url=gone/intro.html" />',
    # Sphinx's own pages: never loaded, so their faults do not count.
    "genindex.html": '<script>throw new Error("skipped")</script>',
    "search.html": '<script>throw new Error("skipped")</script>',
    "_static/page.html": '<script>throw new Error("skipped")</script>',
    "_sources/page.html": '<script>throw new Error("skipped")</script>',
}
LOADED = [
    "broken_image.html",
    "clean.html",
    "console_error.html",
    "js_error.html",
    "marker.html",
    "missing_image.html",
    "nested/clean.html",
    "split_header.html",
    "wide_table.html",
]


def write_book(folder: Path, pages: dict[str, str]) -> Path:
    for name, html in pages.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(html)
    (folder / "pixel.png").write_bytes(PIXEL)
    (folder / "not_an_image.png").write_text("this is text, not a PNG")
    return folder


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, list[tuple[str, str]]], Path]:
    """``({page: [(kind, detail), ...]}, screenshots folder)`` from one check of every fixture page."""
    assert CHROMIUM is not None
    html = write_book(tmp_path_factory.mktemp("html"), PAGES)
    screenshots = tmp_path_factory.mktemp("screenshots")
    found: dict[str, list[tuple[str, str]]] = {}
    for problem in check_book(html, screenshots, CHROMIUM):
        found.setdefault(problem.page, []).append((problem.kind, problem.detail))
    return found, screenshots


@needs_chromium
def test_clean_pages_and_a_good_redirect_pass(checked) -> None:
    found, _ = checked
    for page in ("clean.html", "nested/clean.html", "index.html"):
        assert page not in found, found.get(page)


@needs_chromium
def test_uncaught_exception_is_a_js_error(checked) -> None:
    found, _ = checked
    assert [kind for kind, _ in found["js_error.html"]] == ["js-error"]
    assert "Error: x" in found["js_error.html"][0][1]


@needs_chromium
def test_console_error_is_a_js_error(checked) -> None:
    found, _ = checked
    assert found["console_error.html"] == [("js-error", "console.error: went wrong")]


@needs_chromium
def test_missing_image_is_a_404(checked) -> None:
    found, _ = checked
    [(kind, detail)] = found["missing_image.html"]
    assert kind == "missing-resource"
    assert detail.startswith("HTTP 404 ") and detail.endswith("/nope.png")


@needs_chromium
def test_image_that_does_not_decode_is_missing(checked) -> None:
    found, _ = checked
    [(kind, detail)] = found["broken_image.html"]
    assert kind == "missing-image"
    assert detail.endswith("/not_an_image.png")


@needs_chromium
def test_table_wider_than_the_article_column_even_in_a_scroller(checked) -> None:
    found, _ = checked
    [(kind, detail)] = found["wide_table.html"]
    assert kind == "wide-table"
    assert "3000px wide, its column 688px" in detail


@needs_chromium
def test_header_row_of_index_names(checked) -> None:
    found, _ = checked
    [(kind, detail)] = found["split_header.html"]
    assert kind == "split-header"
    assert "naming only 'method'" in detail


@needs_chromium
def test_visible_marker(checked) -> None:
    found, _ = checked
    [(kind, detail)] = found["marker.html"]
    assert kind == "marker"
    assert "NBVAL_CHECK_OUTPUT" in detail


@needs_chromium
def test_redirect_to_a_missing_page(checked) -> None:
    found, _ = checked
    [(kind, detail)] = found["bad_redirect.html"]
    assert kind == "missing-resource" and "gone/intro.html" in detail


@needs_chromium
def test_only_book_pages_are_checked_and_each_has_a_screenshot(checked) -> None:
    found, screenshots = checked
    assert not {"genindex.html", "search.html", "_static/page.html", "_sources/page.html"} & set(found)
    shots = sorted(p.relative_to(screenshots).as_posix() for p in screenshots.rglob("*.png"))
    assert shots == sorted(page.removesuffix(".html") + ".png" for page in LOADED)
    for shot in shots:
        data = (screenshots / shot).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert int.from_bytes(data[16:20], "big") == browser_check.VIEWPORT["width"]


@needs_chromium
def test_command_line_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = write_book(tmp_path / "clean", {"index.html": PAGES["clean.html"]})
    assert main([str(clean), "--screenshots", str(tmp_path / "shots")]) == 0
    assert (tmp_path / "shots" / "index.png").is_file()
    bad = write_book(tmp_path / "bad", {"a.html": PAGES["marker.html"], "b.html": PAGES["js_error.html"]})
    capsys.readouterr()
    assert main([str(bad), "--screenshots", str(tmp_path / "shots2")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[:2] for line in lines] == [["a.html", "marker"], ["b.html", "js-error"]]


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "absent")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main([str(tmp_path), "--chromium", str(tmp_path / "no-browser")]) == 2
    assert "apt-get install chromium chromium-driver" in capsys.readouterr().err


def test_no_chromium_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError, match="no Chromium found on PATH.*apt-get install chromium chromium-driver"):
        find_chromium()


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("x = 1  # NBVAL_CHECK_OUTPUT", "NBVAL_CHECK_OUTPUT"),
        ("y = 2  # NBVAL_IGNORE_OUTPUT", "NBVAL_IGNORE_OUTPUT"),
        ("z = [1, 2]  # fmt: skip", "fmt: skip"),
        ("f = lambda: 0  # noqa: E731", "noqa"),
        ("as the " + "spec".upper() + " says", "spec".upper()),
        ("An Exception was encountered at 'In [3]'.", "An Exception was encountered at"),
        ("Execution using papermill encountered an exception here and stopped:", "Execution using papermill"),
    ],
)
def test_markers(text: str, hit: str) -> None:
    [problem] = page_problems("p.html", {"images": [], "wide": [], "text": f"Intro.\n{text}\nMore."}, set())
    assert problem.kind == "marker" and hit in problem.detail


def test_ordinary_words_are_not_markers() -> None:
    text = "The specification of the format: skip nothing, NBVAL is a name, noqas are no words."
    assert page_problems("p.html", {"images": [], "wide": [], "text": text}, set()) == []


def test_default_folder_is_where_the_book_build_writes() -> None:
    from das.book import BUILD_DIR

    assert browser_check.DEFAULT_HTML_DIR == BUILD_DIR / "html"
