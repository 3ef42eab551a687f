"""``python -m das ...``: see :mod:`das.cli`."""

from das.cli import main

raise SystemExit(main())
