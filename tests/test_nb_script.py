"""Run notebooks/05-scripted-analysis.ipynb in a real kernel and check its outputs.

The notebook records a reproducible taxi feed to Parquet, reads it back, analyses it, replays
it, and does the same with the ``livenb record`` / ``livenb replay`` commands. The test
recomputes the analysis from the same feed, and checks that the recording holds every record
published, that the replay delivered them all in order, and that the notebook's temporary
directory is gone afterwards. A probe cell appended to the in-memory copy reports the
notebook's parameters and its temporary directory.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
from collections import defaultdict
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from livenb.feeds import taxis

from .conftest import UNIT
from .test_notebooks import (
    NOTEBOOKS,
    check_no_errors,
    check_ran_in_time,
    check_saved_clean,
    execute,
    result,
    stdout,
    widget_views,
)

SCRIPTED = NOTEBOOKS / "05-scripted-analysis.ipynb"

PROBE = """\
import json
print(json.dumps({
    "n": N_TAXIS,
    "rounds": ROUNDS,
    "seed": SEED,
    "cli_count": CLI_COUNT,
    "workdir": str(workdir),
}))
"""


@pytest.fixture(scope="module")
def executed() -> tuple[Any, float, set[str]]:
    """The notebook executed once for this module's tests, the seconds it took, and the
    files that appeared in notebooks/ meanwhile."""
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install -e '.[test]')")
    pytest.importorskip("tqdm", reason="tqdm is not installed (pip install -e '.[test]')")
    before = {p.name for p in NOTEBOOKS.iterdir()}
    nb, seconds = execute(check_saved_clean(SCRIPTED), UNIT, probe=PROBE)
    return nb, seconds, {p.name for p in NOTEBOOKS.iterdir()} - before


@pytest.fixture(scope="module")
def probe(executed: tuple[Any, float, set[str]]) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(stdout(executed[0], "probe"))
    return found


def test_scripted_analysis_is_saved_clean() -> None:
    nb = check_saved_clean(SCRIPTED)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "await " not in code  # a script's blocking calls only
    assert ".table(" not in code and ".chart(" not in code  # no widgets needed
    assert "tempfile.mkdtemp(" in code and "shutil.rmtree(workdir)" in code
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "livenb record " in prose and "livenb replay " in prose  # the CLI equivalents


def test_scripted_analysis_runs_and_leaves_nothing_behind(
    executed: tuple[Any, float, set[str]], probe: dict[str, Any], unit: float
) -> None:
    nb, seconds, new_files = executed
    check_no_errors(nb)
    check_ran_in_time(SCRIPTED.name, seconds, unit)
    assert not Path(probe["workdir"]).exists()
    assert stdout(nb, "cleanup").splitlines() == ["hub running: False", "files left behind: False"]
    assert new_files == set(), f"running the notebook left files in notebooks/: {new_files}"


def test_scripted_analysis_records_everything(
    executed: tuple[Any, float, set[str]], probe: dict[str, Any]
) -> None:
    nb, _, _ = executed
    n, rounds = probe["n"], probe["rounds"]
    total = n * rounds
    assert stdout(nb, "setup").endswith(f"records to publish: {total}\n")
    assert re.fullmatch(
        r"<Recorder \S+taxis\.parquet recording, 0 rows written>\n", stdout(nb, "record")
    )
    published = stdout(nb, "publish").splitlines()
    assert published[0] == f"received: {total}"
    assert re.fullmatch(rf"published {total} records in \d+\.\d s", published[1])
    assert stdout(nb, "finish").endswith(f" closed, {total} rows written>\n")
    info = ast.literal_eval(result(nb, "finish"))
    assert info == {"rows": total, "pattern": "taxis.*", "gaps": [], "dropped": 0}

    lines = stdout(nb, "read").splitlines()
    assert lines[:2] == [f"{total} rows, {n} topics", "every seq of every topic: True"]
    assert re.fullmatch(r"recorded over \d+\.\d s", lines[2])
    header = result(nb, "read").splitlines()[0].split()
    assert header[:5] == ["ts", "seq", "topic", "taxi", "lat"]


def test_scripted_analysis_matches_the_feed(
    executed: tuple[Any, float, set[str]], probe: dict[str, Any]
) -> None:
    nb, _, _ = executed
    records = list(
        itertools.islice(taxis(probe["n"], seed=probe["seed"]), probe["n"] * probe["rounds"])
    )
    dropoffs = [r for r in records if r["event"] == "dropoff"]
    fares: dict[str, list[float]] = defaultdict(list)
    kms: dict[str, list[float]] = defaultdict(list)
    for r in dropoffs:
        fares[r["taxi"]].append(r["fare"])
        kms[r["taxi"]].append(r["trip_km"])

    # The top ten taxis by revenue: taxi, trips, revenue, avg_fare, avg_km.
    rows = re.findall(r"^(T\d+) +(\d+) +(\S+) +(\S+) +(\S+)$", result(nb, "analysis"), re.M)
    assert len(rows) == min(10, len(fares))
    top = sorted(fares, key=lambda taxi: sum(fares[taxi]), reverse=True)[:10]
    assert {row[0] for row in rows} == set(top)
    for taxi, count, revenue, avg_fare, avg_km in rows:
        assert int(count) == len(fares[taxi])
        assert float(revenue) == pytest.approx(sum(fares[taxi]), abs=0.006)
        assert float(avg_fare) == pytest.approx(sum(fares[taxi]) / len(fares[taxi]), abs=0.006)
        assert float(avg_km) == pytest.approx(sum(kms[taxi]) / len(kms[taxi]), abs=0.006)

    all_fares = [r["fare"] for r in dropoffs]
    hired = sum(r["status"] == "hired" for r in records) / len(records)
    assert stdout(nb, "summary").splitlines() == [
        f"completed trips: {len(dropoffs)}",
        f"taxis with a trip: {len(fares)}",
        f"revenue: {round(sum(all_fares), 2)}",
        f"average fare: {round(sum(all_fares) / len(all_fares), 2)}",
        f"longest trip km: {max(r['trip_km'] for r in dropoffs)}",
        f"share of records hired: {round(hired, 3)}",
    ]


def test_scripted_analysis_replays_everything_in_order(
    executed: tuple[Any, float, set[str]], probe: dict[str, Any]
) -> None:
    nb, _, _ = executed
    total = probe["n"] * probe["rounds"]
    assert re.fullmatch(
        rf"replayed {total} records in \d+\.\d\d s \(recorded over \d+\.\d s\)\n",
        stdout(nb, "replay"),
    )
    if find_spec("ipywidgets") is not None:
        assert len(widget_views(nb, "replay")) == 1  # tqdm's progress bar, a widget
    assert stdout(nb, "in-order").splitlines() == [
        "all arrived: True",
        "seq 1..n in order: True",
        "same records, same order: True",
    ]


def test_scripted_analysis_runs_the_commands(
    executed: tuple[Any, float, set[str]], probe: dict[str, Any]
) -> None:
    nb, _, _ = executed
    count = probe["cli_count"]
    lines = stdout(nb, "cli").splitlines()
    assert re.fullmatch(
        rf"livenb record: exit code 0 \| livenb record: wrote {count} records to \S+cli\.parquet "
        r"\(0 gaps, 0 dropped\)",
        lines[0],
    ), lines
    assert lines[1:] == [
        f"rows in cli.parquet: {count}",
        "livenb replay: exit code 0 ",
        f"cli.replayed received: {count}",
        "same records, same order: True",
    ]
