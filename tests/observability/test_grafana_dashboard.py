"""The Grafana dashboard in docs/grafana/ is valid and speaks only the documented metrics: every
query names metrics of observability/metric_names.py (with a histogram's _bucket/_sum/_count
series), every documented metric has a panel, and the layout fits Grafana's 24-column grid.
(tests/observability/test_prometheus.py runs every query against a real Prometheus.)"""

from __future__ import annotations

import re

from support.grafana import dashboard, queries

from agentflow_grpc.observability import metric_names

METRIC = re.compile(r"\b(?:agentflow|gen_ai)_[a-z_]+\b")
LABELS = re.compile(r"\bby \([^)]*\)|\{[^}]*\}")  # grouping labels and selectors
SERIES_SUFFIXES = ("_bucket", "_sum", "_count")
DOCUMENTED = {
    value
    for name, value in vars(metric_names).items()
    if name.isupper() and isinstance(value, str) and value.startswith(("agentflow_", "gen_ai_"))
}


def metric_of(series: str) -> str:
    for suffix in SERIES_SUFFIXES:
        if series.endswith(suffix) and series.removesuffix(suffix) in DOCUMENTED:
            return series.removesuffix(suffix)
    return series


def test_every_query_names_documented_metrics_only() -> None:
    used: set[str] = set()
    for expr in queries():
        names = {metric_of(found) for found in METRIC.findall(LABELS.sub("", expr))}
        assert names, expr
        assert names <= DOCUMENTED, (expr, names - DOCUMENTED)
        used |= names
    assert used == DOCUMENTED, f"metrics without a panel: {sorted(DOCUMENTED - used)}"


def test_panels_have_unique_ids_a_datasource_variable_and_fit_the_grid() -> None:
    document = dashboard()
    panels = document["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    assert document["uid"] == "agentflow-overview"
    variables = {item["name"]: item for item in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    # No two panels overlap.
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine
