"""The graph module: pure functions over a loaded project."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from devenv import graph, loader, processes

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


def test_walk_is_generic_over_names_and_their_needs() -> None:
    needs = {"c": ["a", "b"], "b": ["a", "elsewhere"], "a": [], "d": []}
    # ties keep the order given; a need outside the names is ignored
    assert graph.walk(["d", "c", "b", "a"], needs.__getitem__) == ["d", "a", "b", "c"]
    assert graph.walk(["c", "b"], needs.__getitem__) == ["b", "c"]
    assert graph.walk([], needs.__getitem__) == []
    assert graph.reachable(["c"], lambda n: needs.get(n, [])) == {"a", "b", "c", "elsewhere"}
    assert graph.reachable([], needs.__getitem__) == set()


def test_walk_names_a_cycle_each_needing_the_next() -> None:
    needs = {"a": ["b"], "b": ["c"], "c": ["a"], "x": []}
    with pytest.raises(graph.Cycle) as caught:
        graph.walk(["x", "a", "b", "c"], needs.__getitem__)
    names = caught.value.names
    assert names[0] == names[-1] and len(names) == 4
    for a, b in itertools.pairwise(names):
        assert b in needs[a], (a, b)
    assert str(caught.value) == " -> ".join(names)


def test_process_start_order_uses_the_walk(tmp_path: Path) -> None:
    p = loader.load_text(TEXT + "  worker: {run: \"true\", needs: [web, db]}\n"
                         "  beat: {run: \"true\"}\n", tmp_path)
    assert processes.start_order(p, ["worker", "beat", "web"]) == ["web", "beat", "worker"]


def test_frontier_releases_names_as_their_needs_finish() -> None:
    needs = {"db": [], "cache": [], "api": ["db", "cache", "elsewhere"], "ui": ["api"]}
    walk = graph.Frontier(["ui", "api", "db", "cache"], needs.__getitem__)
    assert walk.waits["api"] == {"db", "cache"}  # a need outside the names is ignored
    todo = {"ui", "api", "db", "cache"}
    assert walk.ready(todo) == ["db", "cache"]  # in the order given
    walk.done("db")
    assert walk.ready(todo - {"db"}) == ["cache"]
    assert walk.missing("api") == {"cache"}
    walk.done("cache")
    assert walk.ready({"ui", "api"}) == ["api"]
    walk.done("api")
    assert walk.ready({"ui"}) == ["ui"] and walk.missing("ui") == set()
