"""The step graph: pure functions over a :class:`~devenv.schema.Project`.

Nothing here reads files, talks to a database or runs a command. :func:`walk` and
:func:`reachable` are the one dependency-order walk and the one transitive closure, generic
over names and a function giving each name's edges (:class:`Frontier` is the walk for
starting things in parallel): steps, services and processes all use them.
"""

from __future__ import annotations

import graphlib
import json
from collections.abc import Callable, Container, Iterable, Mapping, Sequence

from devenv.errors import ConfigError
from devenv.schema import Project


class Cycle(Exception):
    """The names given to :func:`walk` hold a cycle: ``names`` lists it, each name needing
    the next, the first repeated at the end (``a -> b -> a``)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(" -> ".join(names))
        self.names = names


def walk(names: Iterable[str], needs: Callable[[str], Iterable[str]]) -> list[str]:
    """``names`` in dependency order: each after what it ``needs`` (needs outside ``names``
    are ignored); ties in the order of ``names``. Raises :class:`Cycle`."""
    order = list(dict.fromkeys(names))
    index = {n: i for i, n in enumerate(order)}
    ts: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name in order:
        ts.add(name, *(n for n in needs(name) if n in index))
    try:
        ts.prepare()
    except graphlib.CycleError as exc:
        # graphlib lists each node before the node that needs it; we read "a needs b".
        raise Cycle(list(reversed(exc.args[1]))) from None
    out: list[str] = []
    while ts.is_active():
        ready = sorted(ts.get_ready(), key=index.__getitem__)
        out.extend(ready)
        ts.done(*ready)
    return out


class Frontier:
    """The same walk run in parallel: which names may start now, their needs all done.
    The runner's steps and the services' start use it; :func:`walk` is its serial form."""

    def __init__(self, names: Iterable[str], needs: Callable[[str], Iterable[str]]) -> None:
        self.order = list(dict.fromkeys(names))
        wanted = set(self.order)
        #: what each name waits for (needs outside ``names`` are ignored)
        self.waits = {n: set(needs(n)) & wanted for n in self.order}
        self.finished: set[str] = set()

    def ready(self, among: Container[str]) -> list[str]:
        """The names of ``among`` whose needs are all done, in the order given."""
        return [n for n in self.order if n in among and self.waits[n] <= self.finished]

    def done(self, name: str) -> None:
        self.finished.add(name)

    def missing(self, name: str) -> set[str]:
        """What ``name`` still waits for."""
        return self.waits[name] - self.finished


def reachable(starts: Iterable[str], edges: Callable[[str], Iterable[str]]) -> set[str]:
    """``starts`` and every name reached from them through ``edges``, transitively."""
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(edges(name))
    return seen


def step_needs(project: Project, name: str) -> tuple[str, ...]:
    """The steps (not services) that step ``name`` needs directly."""
    return tuple(n for n in project.steps[name].needs if n in project.steps)


def check_acyclic(project: Project) -> None:
    """Raise a :class:`ConfigError` naming the whole cycle if the steps have one."""
    try:
        walk(project.steps, lambda n: step_needs(project, n))
    except Cycle as exc:
        cycle = exc.names[:-1]
        order = list(project.steps)
        start = min(range(len(cycle)), key=lambda i: order.index(cycle[i]))
        cycle = cycle[start:] + cycle[:start]
        first, second = cycle[0], cycle[1 % len(cycle)]
        step = project.steps[first]
        idx = step.needs.index(second)
        line = step.key_lines.get(f"needs[{idx}]", step.loc.line)
        chain = " -> ".join([*cycle, cycle[0]])
        raise ConfigError(f"dependency cycle: {chain}", step.loc.file, line,
                          f"steps.{first}.needs[{idx}]") from None


def topo_order(project: Project, names: Iterable[str] | None = None) -> list[str]:
    """``names`` (default: every step) in dependency order; ties in declaration order."""
    wanted = set(project.steps if names is None else names)
    return walk([n for n in project.steps if n in wanted], lambda n: step_needs(project, n))


def closure(project: Project, targets: Iterable[str]) -> set[str]:
    """``targets`` plus every step they need, transitively."""
    return reachable(targets, lambda n: step_needs(project, n))


def upstream(project: Project, name: str) -> set[str]:
    """Every step ``name`` depends on, transitively (not ``name`` itself)."""
    return closure(project, step_needs(project, name))


def dependants(project: Project) -> dict[str, list[str]]:
    """For each step or service, the steps and processes that need it directly."""
    out: dict[str, list[str]] = {n: [] for n in [*project.services, *project.steps,
                                                 *project.processes]}
    for step in project.steps.values():
        for need in step.needs:
            out[need].append(step.name)
    for proc in project.processes.values():
        for need in proc.needs:
            out.setdefault(need, []).append(proc.name)
    return out


def downstream(project: Project, names: Iterable[str]) -> set[str]:
    """The steps that depend on any of ``names``, transitively (``names`` excluded)."""
    deps = dependants(project)

    def needing(n: str) -> list[str]:
        return [d for d in deps.get(n, []) if d in project.steps]

    return reachable([d for n in names for d in needing(n)], needing)


def barriers(project: Project, names: Iterable[str]) -> list[str]:
    """Steps of ``names`` at which nothing else can run: every other step of ``names`` is
    upstream or downstream of it. After such a step the database holds exactly the work of
    the step and its upstream, so it is a safe point to snapshot. In dependency order."""
    wanted = set(names)
    out = []
    for name in topo_order(project, wanted):
        up = upstream(project, name) & wanted
        down = downstream(project, [name]) & wanted
        if len(up) + len(down) + 1 == len(wanted):
            out.append(name)
    return out


def services_for(project: Project, steps: Iterable[str]) -> list[str]:
    """The services that ``steps`` need directly, in declaration order (the database's
    service first when any step is given, since every step gets its DATABASE_URL)."""
    wanted: set[str] = set()
    for name in steps:
        wanted.update(n for n in project.steps[name].needs if n in project.services)
    return [s for s in project.services if s in wanted]


def node_kind(project: Project, name: str) -> str:
    if name in project.services:
        return "service"
    if name in project.processes:
        return "process"
    return "step"


def edges(project: Project) -> list[tuple[str, str]]:
    """(needed, needing) pairs for steps and processes, in declaration order."""
    out: list[tuple[str, str]] = []
    for step in project.steps.values():
        out.extend((need, step.name) for need in step.needs)
    for proc in project.processes.values():
        out.extend((need, proc.name) for need in proc.needs)
    return out


def to_mermaid(project: Project) -> str:
    """The graph as a Mermaid flowchart (paste into a Markdown file on GitHub)."""
    names = [*project.services, *project.steps, *project.processes]
    ids = {n: f"n{i}" for i, n in enumerate(names)}
    shapes = {"service": ('[("', '")]'), "step": ('["', '"]'), "process": ('(["', '"])')}
    lines = ["flowchart TD"]
    for n in names:
        left, right = shapes[node_kind(project, n)]
        lines.append(f"    {ids[n]}{left}{n}{right}")
    lines.extend(f"    {ids[a]} --> {ids[b]}" for a, b in edges(project))
    return "\n".join(lines) + "\n"


def to_dot(project: Project) -> str:
    """The graph in Graphviz's dot language."""
    shapes = {"service": "cylinder", "step": "box", "process": "ellipse"}
    lines = [f'digraph "{project.name}" {{', "    rankdir=LR;"]
    for n in [*project.services, *project.steps, *project.processes]:
        lines.append(f'    "{n}" [shape={shapes[node_kind(project, n)]}];')
    lines.extend(f'    "{a}" -> "{b}";' for a, b in edges(project))
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(project: Project) -> str:
    """The graph as JSON: nodes with their kind, needs and profiles, and the edges."""
    nodes: list[Mapping[str, object]] = []
    for s in project.services.values():
        nodes.append({"name": s.name, "type": "service", "needs": []})
    for st in project.steps.values():
        nodes.append({"name": st.name, "type": "step", "kind": st.kind, "needs": list(st.needs),
                      "profiles": list(st.profiles) or list(project.profiles)})
    for p in project.processes.values():
        nodes.append({"name": p.name, "type": "process", "needs": list(p.needs)})
    return json.dumps({"project": project.name, "nodes": nodes,
                       "edges": [list(e) for e in edges(project)]}, indent=2) + "\n"


def snapshot_points(project: Project, steps: Sequence[str]) -> list[list[str]]:
    """The step sets refresh-db keeps snapshots of, each listed in dependency order:

    * after a barrier step (nothing can run beside it): the step and its upstream;
    * before a ``checkpoint: true`` step: every step it does not lead to. The checkpoint
      step then waits for all of those, so when its inputs change, refresh-db restores
      that snapshot and runs only the step and its dependants.
    """
    wanted = set(steps)
    sets: list[set[str]] = []
    for b in barriers(project, steps):
        sets.append(closure(project, [b]) & wanted)
    for c in steps:
        if project.steps[c].checkpoint:
            held = wanted - downstream(project, [c]) - {c}
            if held:
                sets.append(held)
    unique: list[list[str]] = []
    for held_set in sets:
        ordered = [n for n in steps if n in held_set]
        if ordered not in unique and len(ordered) < len(steps):
            unique.append(ordered)
    return unique
