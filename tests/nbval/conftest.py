"""nbval runs the reference notebooks here (`make test`); their kernels inherit this environment."""

from __future__ import annotations

from das.book import kernel_environment

# The package importable from the kernel (nbval starts it in tests/nbval) and the data folder set as
# `python -m das.book` sets it, so the references run exactly as the book's notebooks do.
kernel_environment()
