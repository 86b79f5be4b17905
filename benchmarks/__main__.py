"""``python -m benchmarks``: run the side-by-side suite (see benchmarks/suite.py)."""

from benchmarks.suite import main

raise SystemExit(main())
