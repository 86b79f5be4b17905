"""Run notebooks/01-quickstart.ipynb top to bottom in a real IPython kernel and check its outputs.

The notebook is executed in memory (the file on disk stays clean, without outputs). Code cells
carry a tag in their metadata; the checks find cells by tag, so prose can be added freely.
A second run applies ``nest_asyncio`` first, as some users and libraries do: livenb must keep
working on a patched loop (DESIGN.md section 3).

The helpers here (``execute``, ``cell``, ``result``, ``stdout``, ``check_saved_clean``, ...)
are shared with the other notebooks' tests (test_nb_*.py).
"""

from __future__ import annotations

import ast
import copy
import itertools
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import livenb
from livenb.feeds import ticker

nbformat = pytest.importorskip(
    "nbformat", reason="nbformat is not installed (pip install -e '.[test]')"
)
nbclient = pytest.importorskip(
    "nbclient", reason="nbclient is not installed (pip install -e '.[test]')"
)
pytest.importorskip(
    "ipykernel", reason="ipykernel is not installed, so there is no python3 kernel to run in"
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
QUICKSTART = NOTEBOOKS / "01-quickstart.ipynb"

# Records the quickstart publishes to "ticks", in order (it takes them from the same feed).
SINGLES = [
    {"sym": "ACME", "px": 100.5, "qty": 100},
    {"sym": "INITECH", "px": 99.75, "qty": 40},
    {"sym": "ACME", "px": 100.25, "qty": 25},
]
BURST = list(itertools.islice(ticker(seed=1), 500))

# Appended to the in-memory copy only: which livenb the kernel ran, and whether its loop was
# patched by nest_asyncio (livenb itself must never patch it).
PROBE = """\
import asyncio, sys, livenb
print(repr(livenb.__file__))
print(repr(sys.executable))
print(getattr(asyncio.get_event_loop(), "_nest_patched", False))
print(asyncio.run.__module__)
"""
NEST_ASYNCIO = "import nest_asyncio\nnest_asyncio.apply()"


def load_quickstart() -> Any:
    return nbformat.read(QUICKSTART, as_version=4)


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def execute(nb: Any, unit: float, *, probe: str | None = None) -> tuple[Any, float]:
    """Execute a copy of ``nb`` in a fresh python3 kernel with notebooks/ as the working dir,
    after appending ``probe`` (a code cell tagged "probe") when given. Returns the executed
    copy and the seconds it took, kernel start included. Raises CellExecutionError, with the
    traceback, if a cell fails; each cell may take up to 12 units."""
    nb = copy.deepcopy(nb)
    if probe is not None:
        nb.cells.append(
            nbformat.v4.new_code_cell(probe, id="test-probe", metadata={"tags": ["probe"]})
        )
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=int(12 * unit),
        startup_timeout=int(12 * unit),
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    started = time.monotonic()
    client.execute()
    return nb, time.monotonic() - started


def run(nb: Any, unit: float) -> Any:
    """Execute the quickstart ``nb`` (a copy) with the PROBE cell appended."""
    executed, _ = execute(nb, unit, probe=PROBE)
    return executed


def check_saved_clean(path: Path) -> Any:
    """The notebook file is valid nbformat 4 for the python3 kernel and saved without outputs;
    every code cell has exactly one tag and no two cells share one. Returns the notebook."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata["kernelspec"]["name"] == "python3"
    tags = []
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, (
                f"save the notebook without outputs (cell {c.source[:40]!r})"
            )
            assert len(c.metadata.get("tags", [])) == 1, f"tag the cell {c.source[:40]!r}"
            tags += c.metadata["tags"]
    assert len(tags) == len(set(tags)), f"duplicate cell tags in {path.name}: {tags}"
    return nb


def check_no_errors(nb: Any) -> None:
    """Nothing failed, warned or logged: every output is a result, a display or stdout."""
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        for out in c.outputs:
            assert out.output_type != "error", f"error in cell {c.source!r}: {out}"
            assert not (out.output_type == "stream" and out.name == "stderr"), (
                f"cell {c.source!r} wrote to stderr: {out.text}"
            )


def check_ran_in_time(name: str, seconds: float, unit: float) -> None:
    """A notebook must run top to bottom well within a minute (12 units: 60 s unscaled).
    A bound against hangs and runaway demos, not a speed measurement (benchmarks/ does that)."""
    print(f"{name} ran in {seconds:.1f} s")
    assert seconds < 12 * unit, f"{name} took {seconds:.1f} s; it must run in under a minute"


def widget_views(nb: Any, tag: str) -> list[dict[str, Any]]:
    """The widget views (model ids) the cell displayed or returned."""
    return [
        o.data[WIDGET_VIEW]
        for o in cell(nb, tag).outputs
        if o.output_type in ("display_data", "execute_result") and WIDGET_VIEW in o.data
    ]


def cell(nb: Any, tag: str) -> Any:
    found = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(found) == 1, f"expected exactly one cell tagged {tag!r}, found {len(found)}"
    return found[0]


def result(nb: Any, tag: str) -> str:
    """The text/plain of the cell's execute_result."""
    outputs = [o for o in cell(nb, tag).outputs if o.output_type == "execute_result"]
    assert len(outputs) == 1, f"cell {tag!r} should show one result: {cell(nb, tag).outputs}"
    text: str = outputs[0].data["text/plain"]
    return text


def stdout(nb: Any, tag: str) -> str:
    return "".join(
        o.text for o in cell(nb, tag).outputs if o.output_type == "stream" and o.name == "stdout"
    )


def table_rows(text: str) -> list[list[str]]:
    """The whitespace-split body lines of a DataFrame/Series text repr (header line dropped)."""
    return [line.split() for line in text.strip().splitlines()[1:]]


def check_quickstart(nb: Any, *, nest_patched: bool) -> None:
    check_no_errors(nb)

    probe = stdout(nb, "probe").splitlines()
    assert Path(ast.literal_eval(probe[0])).resolve() == Path(livenb.__file__).resolve(), (
        "the kernel imported a livenb other than this checkout's"
    )
    assert Path(ast.literal_eval(probe[1])).resolve() == Path(sys.executable).resolve()
    assert probe[2] == str(nest_patched)
    assert (probe[3] == "asyncio.runners") is not nest_patched

    assert result(nb, "imports") == repr(livenb.__version__)
    assert re.fullmatch(r"<Hub ws://127\.0\.0\.1:\d+ token=\*\*\* running>", result(nb, "hub"))
    assert result(nb, "subscribe") == "<Subscription 'ticks' received=0 live>"

    # Three single records: a 3-row frame with the fields, plus ts and seq.
    assert result(nb, "wait-singles") == "3"
    header, *rows = result(nb, "frame-small").strip().splitlines()
    assert header.split() == ["ts", "seq", "sym", "px", "qty"]
    assert [r.split()[0] for r in rows] == ["0", "1", "2"]
    assert [r.split()[-4:] for r in rows] == [
        ["1", "ACME", "100.50", "100"],
        ["2", "INITECH", "99.75", "40"],
        ["3", "ACME", "100.25", "25"],
    ]
    assert "text/html" in next(o for o in cell(nb, "frame-small").outputs).data

    # The burst: the notebook's feed matches the one computed here.
    assert result(nb, "burst-first") == repr(BURST[0])
    assert result(nb, "wait-burst") == "503"
    # Wide frames wrap in text/plain; the first block has index, ts (two words), seq, sym.
    tail = re.findall(r"^(\d+) +\S+ +\S+ +(\d+) +([A-Z]+) ", result(nb, "tail"), re.M)
    assert tail == [(str(i), str(i + 1), r["sym"]) for i, r in enumerate(BURST[-5:], 498)]

    lines = result(nb, "dtypes").splitlines()
    assert lines[-1] == "dtype: object"
    dtypes = {name: dtype.strip() for name, _, dtype in (x.partition(" ") for x in lines[:-1])}
    assert list(dtypes) == ["ts", "seq", "sym", "px", "qty", "bid", "ask"]
    assert re.fullmatch(r"datetime64\[(ns|us|ms|s), UTC\]", dtypes["ts"]), dtypes
    assert dtypes["seq"] == "int64"
    assert dtypes["px"] == dtypes["bid"] == dtypes["ask"] == "float64"
    assert dtypes["qty"] == "int64"
    assert dtypes["sym"] in ("str", "object")

    facts = stdout(nb, "facts").splitlines()
    assert facts[:3] == ["rows: 503", "seq: 1 to 503", "seq increasing by one: True"]
    assert re.fullmatch(r"ts dtype: datetime64\[(ns|us|ms|s), UTC\]", facts[3])

    # groupby(sym).px.last() in the kernel equals the same computation on the records here.
    expected: dict[str, float] = {}
    for record in SINGLES + BURST:
        expected[record["sym"]] = record["px"]
    latest = {name: float(px) for name, px in table_rows(result(nb, "latest"))[:-1]}
    assert latest == pytest.approx(dict(sorted(expected.items())), rel=1e-6)

    # The window keeps the newest 1000 rows.
    assert stdout(nb, "window").splitlines() == [
        "received: 1503",
        "rows: 1000",
        "seq: 504 to 1503",
    ]

    # ticks.* got ticks.us and ticks.eu (one record each, seq 1), not ticks nor ticks.eu.fx.
    wild = sorted(r[1:] for r in table_rows(result(nb, "wildcard")))
    assert wild == [["ticks.eu", "1", "SAP", "120.5"], ["ticks.us", "1", "ACME", "101.0"]]

    assert stdout(nb, "await").splitlines() == [
        "the hub stored it as ticks seq 1504",
        "our blocking subscription has received 1504 records",
    ]

    stats = ast.literal_eval(result(nb, "hub-stats"))
    assert stats["running"] is True
    assert stats["auth"] is True
    assert stats["records_in"] == 3 + 500 + 1000 + 3 + 1
    assert stats["records_out"] == 1504 + 2  # to sub and wild; the async client subscribed none
    assert stats["topics"] == 4  # ticks, ticks.us, ticks.eu, ticks.eu.fx
    assert stats["errors"] == {}
    assert stats["drops"] == 0

    sub_stats = ast.literal_eval(result(nb, "sub-stats"))
    assert sub_stats["received"] == 1504
    assert sub_stats["rows"] == 1000
    assert sub_stats["unread_dropped"] == 0
    assert sub_stats["type_changes"] == 0
    assert sub_stats["last_seq"] == {"ticks": 1504}

    # The live widgets: each cell shows one widget view (a model the front end renders).
    for tag in ("table", "chart", "status"):
        views = widget_views(nb, tag)
        assert len(views) == 1, f"cell {tag!r} should show one widget: {cell(nb, tag).outputs}"
        assert views[0]["model_id"], views
    assert len({widget_views(nb, tag)[0]["model_id"] for tag in ("table", "chart", "status")}) == 3
    assert stdout(nb, "live").splitlines() == ["received: 2504"]  # 1,000 more ticks

    assert re.fullmatch(r"<Hub ws://127\.0\.0\.1:\d+ token=\*\*\* stopped>", result(nb, "closed"))


def test_quickstart_is_saved_clean() -> None:
    nb = check_saved_clean(QUICKSTART)
    sources = "\n".join(c.source for c in nb.cells)
    assert "nest_asyncio" not in sources.replace("`nest_asyncio`", "")
    # The tour: serve, publish, subscribe, frame, table, chart, status.
    for call in (
        "livenb.serve(",
        ".publish(",
        ".subscribe(",
        ".frame",
        ".table(",
        ".chart(",
        ".status(",
    ):
        assert call in sources, f"the quick start should show {call}"


def test_quickstart_runs(unit: float) -> None:
    nb, seconds = execute(load_quickstart(), unit, probe=PROBE)
    check_quickstart(nb, nest_patched=False)
    check_ran_in_time(QUICKSTART.name, seconds, unit)


def test_quickstart_runs_after_nest_asyncio(unit: float) -> None:
    pytest.importorskip("nest_asyncio", reason="nest_asyncio is not installed")
    nb = load_quickstart()
    nb.cells.insert(0, nbformat.v4.new_code_cell(NEST_ASYNCIO, id="test-nest-asyncio"))
    nb = run(nb, unit)
    check_quickstart(nb, nest_patched=True)
