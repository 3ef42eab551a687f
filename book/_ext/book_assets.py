"""A Sphinx extension of this book: each script on a page once, and the book's stylesheet.

sphinx-thebe and sphinx-togglebutton add their inline configuration scripts after the HTML builder
has copied its list of scripts, so Sphinx 7 writes them twice, and the second ``const`` declaration
is a JavaScript error on every page. This keeps the first copy of every script.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"  # book.css: what the theme does not do for result tables


def _unique_scripts(app, pagename, templatename, context, doctree) -> None:  # noqa: ANN001
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # the file and the attributes (an inline script's body among them), whatever the priority
        # (an inline script's file is None or "", depending on who added it)
        key = (getattr(script, "filename", str(script)) or "", tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def _add_static(app) -> None:  # noqa: ANN001
    app.config.html_static_path.append(str(STATIC))


def setup(app):  # noqa: ANN001, ANN201
    app.connect("html-page-context", _unique_scripts, priority=900)
    app.connect("builder-inited", _add_static)
    app.add_css_file("book.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
