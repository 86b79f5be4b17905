"""A Binder simulation: a fresh virtual environment built only from binder/ executes every
notebook in notebooks/, as a Binder user's kernel would."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_binder_files_alone_run_every_notebook(tmp_path: Path, unit: float) -> None:
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    assert runtime.startswith("python-3.")
    wanted = tuple(int(x) for x in runtime.removeprefix("python-").split("."))
    assert sys.version_info[: len(wanted)] >= wanted, f"binder/runtime.txt asks for {runtime}"
    env_dir = tmp_path / "binder-env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", "binder/requirements.txt"],
        cwd=ROOT,  # as repo2docker does: from the repository root
        env=environment,
        capture_output=True,
        text=True,
        timeout=120 * unit,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    assert NOTEBOOKS, "no notebooks to run"
    work = tmp_path / "notebooks"  # copies: executed in place, the repository stays clean
    work.mkdir()
    for notebook in NOTEBOOKS:
        copy = work / notebook.name
        copy.write_bytes(notebook.read_bytes())
        run = subprocess.run(
            [str(env_dir / "bin" / "jupyter"), "execute", "--inplace", "--timeout=120", str(copy)],
            cwd=work,
            env={**environment, "JUPYTER_PLATFORM_DIRS": "1"},
            capture_output=True,
            text=True,
            timeout=60 * unit,
            check=False,
        )
        assert run.returncode == 0, f"{notebook.name}:\n{run.stderr[-4000:]}"
        assert '"output_type": "error"' not in copy.read_text()
    # The kernel was the fresh environment's, not this one's.
    probe = subprocess.run(
        [str(python), "-c", "import livenb, pycrdt, pyarrow, jupyter_server_proxy; print(livenb.__file__)"],
        capture_output=True, text=True, timeout=10 * unit, check=False,
    )
    assert probe.returncode == 0 and str(ROOT / "livenb") in probe.stdout, probe.stderr


if not NOTEBOOKS:  # pragma: no cover
    pytest.skip("no notebooks", allow_module_level=True)
