"""``devenv graph``: the step graph as a tree, Mermaid, dot or JSON."""

from __future__ import annotations

from typing import Any

from devenv import graph as g
from devenv.console import Output
from devenv.errors import EXIT_OK, UsageError
from devenv.schema import Project

FORMATS = ("tree", "mermaid", "dot", "json")


def tree_children(project: Project) -> list[tuple[str, Any]]:
    """Roots (nodes needing nothing) with their dependants below; a node reached twice is
    shown once in full and then as a reference."""
    deps = g.dependants(project)
    shown: set[str] = set()

    def label(name: str) -> str:
        kind = g.node_kind(project, name)
        if kind == "step":
            step = project.steps[name]
            prof = f" [{', '.join(step.profiles)}]" if step.profiles else ""
            return f"{name}{prof}"
        return f"{name} ({kind})"

    def node(name: str) -> tuple[str, Any]:
        if name in shown:
            return (f"{label(name)} ↑", [])
        shown.add(name)
        return (label(name), [node(d) for d in deps.get(name, [])])

    roots = [n for n in project.services]
    roots += [s.name for s in project.steps.values() if not s.needs]
    roots += [p.name for p in project.processes.values() if not p.needs]
    return [node(r) for r in roots]


def run(project: Project, out: Output, fmt: str = "tree") -> int:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}'; one of: {', '.join(FORMATS)}")
    if fmt == "mermaid":
        out.text(g.to_mermaid(project))
    elif fmt == "dot":
        out.text(g.to_dot(project))
    elif fmt == "json":
        out.text(g.to_json(project))
    else:
        out.tree(f"{project.name} ({len(project.steps)} steps)", tree_children(project))
    return EXIT_OK
