"""Packaging promises: a light import, a sorted public surface, typed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import livenb


def test_import_is_light() -> None:
    code = (
        "import sys, livenb; "
        "heavy = [m for m in ('pandas', 'ipywidgets', 'anywidget', 'pyarrow', 'redis') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_all_is_sorted_and_complete() -> None:
    assert livenb.__all__ == sorted(livenb.__all__)
    for name in livenb.__all__:
        assert hasattr(livenb, name), name
    public = {n for n in dir(livenb) if not n.startswith("_") and not isinstance(getattr(livenb, n), type(sys))}
    public -= {"annotations"}
    assert public <= set(livenb.__all__), public - set(livenb.__all__)


def test_errors_share_one_root() -> None:
    for name in livenb.__all__:
        obj = getattr(livenb, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, livenb.LivenbError)


def test_py_typed_is_shipped() -> None:
    assert (Path(livenb.__file__).parent / "py.typed").exists()


PURE_CORE = (
    "_protocol.py",
    "_topics.py",
    "_state.py",
    "_window.py",
    "_errors.py",
    "_permissions.py",
    "_throttle.py",
    "_views.py",
)
FORBIDDEN = {
    "asyncio",
    "socket",
    "threading",
    "websockets",
    "pandas",
    "ipywidgets",
    "anywidget",
    "selectors",
}


def test_pure_core_imports_no_io() -> None:
    package = Path(livenb.__file__).parent
    for name in PURE_CORE:
        tree = ast.parse((package / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & FORBIDDEN, f"{name} imports {roots & FORBIDDEN}"
