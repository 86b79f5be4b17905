"""Run notebooks/04-taxi-map.ipynb in a real kernel and check its outputs against the feed.

The fleet is reproducible (``livenb.feeds.taxis`` with the notebook's seed), so the test
recomputes here what the notebook must show: every taxi's latest position (on the map and in
the table), the completed trips, revenue and fares per taxi, and the fleet's totals. A probe
cell appended to the in-memory copy reports the notebook's parameters and the map's markers.
A second run blocks `import ipyleaflet` and checks the fallback: livenb's own scatter chart.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
from collections import defaultdict
from importlib.util import find_spec
from typing import Any

import pytest

from livenb.feeds import DEFAULT_BOUNDS, taxi_ids, taxis

from .conftest import UNIT
from .test_notebooks import (
    NOTEBOOKS,
    check_no_errors,
    check_ran_in_time,
    check_saved_clean,
    execute,
    nbformat,
    result,
    stdout,
    widget_views,
)

TAXI_MAP = NOTEBOOKS / "04-taxi-map.ipynb"
HAVE_LEAFLET = find_spec("ipyleaflet") is not None

PROBE = """\
import json
print(json.dumps({
    "n": N_TAXIS,
    "rounds": ROUNDS,
    "seed": SEED,
    "bounds": list(DEFAULT_BOUNDS),
    "received": fleet.received,
    "refreshes": refreshes,
    "leaflet": ipyleaflet is not None,
    "markers": {taxi: [*m.location, m.color] for taxi, m in markers.items()},
}))
"""


def expected_fleet(n: int, rounds: int, seed: int) -> dict[str, Any]:
    """What the notebook must find, computed from the same feed without livenb or pandas."""
    records = list(itertools.islice(taxis(n, seed=seed), n * rounds))
    latest = {r["taxi"]: r for r in records}  # the last record of each taxi
    trips: dict[str, list[float]] = defaultdict(list)  # taxi -> fares of completed trips
    km: dict[str, float] = defaultdict(float)
    for r in records:
        if r["event"] == "dropoff":
            trips[r["taxi"]].append(r["fare"])
            km[r["taxi"]] += r["trip_km"]
    fares = [fare for fs in trips.values() for fare in fs]
    return {
        "records": records,
        "latest": latest,
        "trips": trips,
        "km": km,
        "totals": {
            "completed trips": len(fares),
            "revenue": round(sum(fares), 2),
            "average fare": round(sum(fares) / len(fares), 2),
            "fare per km": round(sum(fares) / sum(km.values()), 2),
            "trips in progress": sum(r["status"] == "hired" for r in latest.values()),
        },
    }


@pytest.fixture(scope="module")
def executed() -> tuple[Any, float]:
    """The notebook executed once for this module's tests, and the seconds it took."""
    return execute(check_saved_clean(TAXI_MAP), UNIT, probe=PROBE)


def test_taxi_map_is_saved_clean() -> None:
    nb = check_saved_clean(TAXI_MAP)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "import ipyleaflet" in code and "except ImportError" in code  # optional
    assert 'mode="markers"' in code  # the scatter that needs no extra package
    assert ".on_record(" not in code  # widgets are not updated from livenb's loop thread


def test_taxi_map_runs(executed: tuple[Any, float], unit: float) -> None:
    nb, seconds = executed
    check_no_errors(nb)
    check_ran_in_time(TAXI_MAP.name, seconds, unit)


def test_taxi_map_shows_every_taxi_where_it_is(executed: tuple[Any, float]) -> None:
    nb, _ = executed
    probe = json.loads(stdout(nb, "probe"))
    n, rounds = probe["n"], probe["rounds"]
    assert probe["bounds"] == list(DEFAULT_BOUNDS)
    expected = expected_fleet(n, rounds, probe["seed"])
    south, west, north, east = DEFAULT_BOUNDS

    assert ast.literal_eval(result(nb, "fleet")) == expected["records"][0]
    assert result(nb, "subscribe") == "<Subscription 'taxis.*' received=0 live>"
    assert probe["received"] == n * rounds
    assert stdout(nb, "follow").startswith(f"{n * rounds} records from {n} taxis, ")
    assert probe["refreshes"] >= 1

    # The table of latest positions: one row per taxi, equal to the feed's last record.
    rows = re.findall(
        r"^(T\d+) +(\S+) +(\S+) +(\S+) +(free|hired) +(move|pickup|dropoff) +(\S+)$",
        result(nb, "latest"),
        re.M,
    )
    assert [row[0] for row in rows] == list(taxi_ids(n))
    for taxi, lat, lon, speed, status, event, trip_id in rows:
        last = expected["latest"][taxi]
        assert south <= float(lat) <= north and west <= float(lon) <= east
        assert float(lat) == pytest.approx(last["lat"], abs=1e-6)
        assert float(lon) == pytest.approx(last["lon"], abs=1e-6)
        assert float(speed) == pytest.approx(last["speed"])
        assert (status, event) == (last["status"], last["event"])
        assert trip_id == (last["trip_id"] or "NaN")
    free = sum(r["status"] == "free" for r in expected["latest"].values())
    assert stdout(nb, "inside").splitlines() == [
        f"taxis: {n}",
        "all inside the city: True",
        f"free: {free} hired: {n - free}",
    ]

    # The scatter is livenb's own chart widget; the map is ipyleaflet's, when installed.
    assert len(widget_views(nb, "chart")) == 1
    assert probe["leaflet"] is HAVE_LEAFLET
    if HAVE_LEAFLET:
        assert len(widget_views(nb, "map")) == 1
        colors = {"free": "#2ca02c", "hired": "#d62728"}
        assert probe["markers"] == {
            taxi: [r["lat"], r["lon"], colors[r["status"]]]
            for taxi, r in expected["latest"].items()
        }
    else:
        assert "No ipyleaflet" in stdout(nb, "map")


def test_taxi_map_trips_add_up(executed: tuple[Any, float]) -> None:
    nb, _ = executed
    probe = json.loads(stdout(nb, "probe"))
    expected = expected_fleet(probe["n"], probe["rounds"], probe["seed"])

    # trips.round(2): taxi, trips, revenue, avg_fare, km; sorted by revenue, highest first.
    rows = re.findall(r"^(T\d+) +(\d+) +(\S+) +(\S+) +(\S+)$", result(nb, "trips"), re.M)
    assert sorted(row[0] for row in rows) == list(taxi_ids(probe["n"]))
    revenues = [float(row[2]) for row in rows]
    assert revenues == sorted(revenues, reverse=True)
    for taxi, count, revenue, avg_fare, km in rows:
        fares = expected["trips"][taxi]
        assert int(count) == len(fares)
        assert float(revenue) == pytest.approx(sum(fares), abs=0.006)
        if fares:
            assert float(avg_fare) == pytest.approx(sum(fares) / len(fares), abs=0.006)
        else:
            assert avg_fare == "NaN"
        assert float(km) == pytest.approx(expected["km"][taxi], abs=0.006)
    assert sum(int(row[1]) for row in rows) == expected["totals"]["completed trips"]

    totals = ast.literal_eval(result(nb, "totals"))
    assert totals == expected["totals"]
    assert totals["completed trips"] > probe["n"]  # a busy city: more trips than taxis

    assert re.fullmatch(r"<Hub ws://127\.0\.0\.1:\d+ token=\*\*\* stopped>", result(nb, "close"))


def test_taxi_map_falls_back_to_the_scatter_without_ipyleaflet(unit: float) -> None:
    nb = check_saved_clean(TAXI_MAP)
    block = "import sys\nsys.modules['ipyleaflet'] = None  # import ipyleaflet: ImportError"
    nb.cells.insert(0, nbformat.v4.new_code_cell(block, id="test-no-leaflet"))
    nb, _ = execute(nb, unit, probe=PROBE)
    check_no_errors(nb)
    probe = json.loads(stdout(nb, "probe"))
    assert probe["leaflet"] is False and probe["markers"] == {}
    assert "not installed" in stdout(nb, "imports")
    assert "No ipyleaflet" in stdout(nb, "map") and not widget_views(nb, "map")
    assert len(widget_views(nb, "chart")) == 1
    n, rounds = probe["n"], probe["rounds"]
    assert stdout(nb, "inside").splitlines()[:2] == [f"taxis: {n}", "all inside the city: True"]
    assert (
        ast.literal_eval(result(nb, "totals")) == expected_fleet(n, rounds, probe["seed"])["totals"]
    )
