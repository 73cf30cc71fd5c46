"""The graph module: pure functions over a loaded project."""

from __future__ import annotations

import json
from pathlib import Path

from devenv import graph, loader

TEXT = """\
version: 1
name: g
services:
  db: {image: postgres:15}
steps:
  migrate: {run: "true", needs: [db]}
  fixtures: {run: "true", needs: [migrate]}
  billing: {run: "true", needs: [db]}
  fake: {run: "true", needs: [fixtures]}
  report: {run: "true", needs: [fake, billing]}
processes:
  web: {run: "true", needs: [migrate]}
"""


def project(tmp_path: Path) -> object:
    return loader.load_text(TEXT, tmp_path)


def test_topological_order_is_stable(tmp_path: Path) -> None:
    p = loader.load_text(TEXT, tmp_path)
    assert graph.topo_order(p) == ["migrate", "billing", "fixtures", "fake", "report"]


def test_closure_upstream_downstream(tmp_path: Path) -> None:
    p = loader.load_text(TEXT, tmp_path)
    assert graph.closure(p, ["fake"]) == {"fake", "fixtures", "migrate"}
    assert graph.upstream(p, "report") == {"fake", "fixtures", "migrate", "billing"}
    assert graph.downstream(p, ["fixtures"]) == {"fake", "report"}
    assert graph.services_for(p, ["migrate", "fake"]) == ["db"]


def test_mermaid_dot_json(tmp_path: Path) -> None:
    p = loader.load_text(TEXT, tmp_path)
    mermaid = graph.to_mermaid(p)
    assert mermaid.splitlines()[0] == "flowchart TD"
    assert '    n0[("db")]' in mermaid and "    n0 --> n1" in mermaid
    dot = graph.to_dot(p)
    assert '"fake" -> "report";' in dot and '"db" [shape=cylinder];' in dot
    data = json.loads(graph.to_json(p))
    assert {n["name"] for n in data["nodes"]} == {"db", "migrate", "fixtures", "billing", "fake",
                                                  "report", "web"}
    assert ["migrate", "web"] in data["edges"]


def test_barriers_are_steps_nothing_runs_beside(tmp_path: Path) -> None:
    p = loader.load_text(TEXT, tmp_path)
    # billing needs only the database: it can run beside migrate, fixtures and fake
    assert graph.barriers(p, p.steps) == ["report"]
    assert graph.barriers(p, ["migrate", "fixtures", "fake"]) == ["migrate", "fixtures", "fake"]
