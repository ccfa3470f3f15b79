"""The service map's layout: the learned topology as boxes in columns by call depth, and arrows.

Computed here rather than in the browser so the page needs no graph library and the same topology
always draws the same picture (a map people learn by its shape must not reshuffle on reload):

* **Columns** are call depth: entry services (nobody calls them) in column 0, and every callee at
  least one column right of each of its callers (the longest call path), so databases and brokers
  end up on the right. A cycle is cut at the edge that closes it, found by a depth-first walk in
  name order; that edge is still drawn, curving back.
* **Rows** within a column follow the average row of the node's callers (fewer crossings), ties
  by name.
* Every coordinate is an integer and every label is escaped by the template, so service names
  (telemetry, hence untrusted) are only ever text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from correlate.topology import Edge, Topology

__all__ = ["Link", "Node", "ServiceMap", "columns", "layout"]

NODE_W = 170
NODE_H = 34
COL_GAP = 90
ROW_GAP = 18
MARGIN = 24
_LABEL_CHARS = 22


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    label: str  # the name, cut to fit the box (the full name is in the node's <title>)
    x: int
    y: int
    column: int
    reasons: tuple[str, ...]  # why it is highlighted; empty when healthy

    @property
    def anomalous(self) -> bool:
        return bool(self.reasons)


@dataclass(frozen=True, slots=True)
class Link:
    caller: str
    callee: str
    kind: str
    path: str  # SVG path data
    calls: int
    error_ratio: float
    p95_ms: float
    back: bool  # drawn against the columns' direction (a cycle, or a call to the same column)


@dataclass(frozen=True, slots=True)
class ServiceMap:
    width: int
    height: int
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    node_width: int = NODE_W
    node_height: int = NODE_H


def _back_edges(topology: Topology) -> set[tuple[str, str]]:
    """Edges closing a cycle, found by a depth-first walk from the entry services, in name order."""
    roots = [s for s in topology.services if not topology.callers(s)]
    order = roots + [s for s in topology.services if s not in set(roots)]
    state: dict[str, int] = {}  # 1: on the walk's stack, 2: done
    back: set[tuple[str, str]] = set()
    for start in order:
        if start in state:
            continue
        state[start] = 1
        stack = [(start, iter(topology.callees(start)))]
        while stack:
            node, todo = stack[-1]
            nxt = next(todo, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(topology.callees(nxt))))
    return back


def columns(topology: Topology) -> dict[str, int]:
    """Each service's column: the length of the longest acyclic call path that reaches it."""
    back = _back_edges(topology)
    column = dict.fromkeys(topology.services, 0)
    # Longest paths by relaxation: the graph without back edges is acyclic, so this settles in at
    # most len(services) rounds (a handful for real topologies).
    for _ in range(len(column)):
        changed = False
        for edge in topology.edges:
            if (edge.caller, edge.callee) in back or edge.caller == edge.callee:
                continue
            if column[edge.callee] < column[edge.caller] + 1:
                column[edge.callee] = column[edge.caller] + 1
                changed = True
        if not changed:
            break
    return column


def _label(name: str) -> str:
    return name if len(name) <= _LABEL_CHARS else name[: _LABEL_CHARS - 1] + "…"


def layout(topology: Topology, anomalies: Mapping[str, Sequence[str]]) -> ServiceMap:
    """Place every service of ``topology``; ``anomalies`` maps a service to why it is highlighted."""
    column = columns(topology)
    by_column: dict[int, list[str]] = {}
    for name in topology.services:
        by_column.setdefault(column[name], []).append(name)
    row: dict[str, int] = {}
    for col in sorted(by_column):

        def weight(name: str) -> tuple[float, str]:
            placed = [row[c] for c in topology.callers(name) if c in row]
            return (sum(placed) / len(placed) if placed else -1.0, name)

        for index, name in enumerate(sorted(by_column[col], key=weight)):
            row[name] = index
    nodes = {
        name: Node(
            name,
            _label(name),
            MARGIN + column[name] * (NODE_W + COL_GAP),
            MARGIN + row[name] * (NODE_H + ROW_GAP),
            column[name],
            tuple(anomalies.get(name, ())),
        )
        for name in topology.services
    }
    links = tuple(_link(nodes[e.caller], nodes[e.callee], e) for e in topology.edges)
    cols = max(column.values(), default=0) + 1
    rows = max((len(v) for v in by_column.values()), default=1)
    width = 2 * MARGIN + cols * NODE_W + (cols - 1) * COL_GAP
    height = 2 * MARGIN + rows * NODE_H + (rows - 1) * ROW_GAP + 40  # room for curves below
    ordered = tuple(sorted(nodes.values(), key=lambda n: (n.column, n.y)))
    return ServiceMap(width, height, ordered, links)


def _link(a: Node, b: Node, edge: Edge) -> Link:
    mid_a, mid_b = a.y + NODE_H // 2, b.y + NODE_H // 2
    if a.name == b.name:  # a service calling itself: a small loop on its right
        x, y = a.x + NODE_W, a.y
        path = f"M {x} {y + 8} C {x + 40} {y - 20} {x + 40} {y + NODE_H + 20} {x} {y + NODE_H - 8}"
        back = True
    elif b.column > a.column:
        x1, x2 = a.x + NODE_W, b.x
        bend = (x2 - x1) // 2
        path = f"M {x1} {mid_a} C {x1 + bend} {mid_a} {x2 - bend} {mid_b} {x2} {mid_b}"
        back = False
    elif b.column == a.column:  # same column: around the right side
        x = a.x + NODE_W
        path = f"M {x} {mid_a} C {x + 50} {mid_a} {x + 50} {mid_b} {x} {mid_b}"
        back = True
    else:  # against the flow: from the caller's left, dipping below, into the callee's right side
        x1, x2 = a.x, b.x + NODE_W
        dip = max(a.y, b.y) + NODE_H + 30
        path = f"M {x1} {mid_a} C {x1 - 40} {dip} {x2 + 40} {dip} {x2} {mid_b}"
        back = True
    return Link(a.name, b.name, edge.kind, path, edge.calls, edge.error_ratio, edge.p95_ms, back)
