"""``python -m livenb``: the same command line as the ``livenb`` console script."""

from __future__ import annotations

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
