"""Plain dataflow diagrams through Graphviz: one box per node, one cluster per block instance."""
from __future__ import annotations

import html
import shutil

from .. import ops as O
from . import nested
from ..ir import IR


class TooLarge(Exception):
    """The diagram has more nodes than Graphviz can lay out in reasonable time, even collapsed."""

    def __init__(self, n: int, limit: int):
        super().__init__(f"the diagram would have {n:,} boxes, more than the limit of {limit:,}")
        self.n, self.limit = n, limit


_HEAD = ['  rankdir=TB;',
         '  node [shape=box, style="rounded,filled", fillcolor="#f4f6fb", fontname="Helvetica", fontsize=10];',
         '  edge [fontname="Helvetica", fontsize=8, color="#555566"];']


def _q(s: str) -> str:
    """A DOT quoted string."""
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ") + '"'


def _groups(ir: IR, depth: int) -> tuple[dict[str, str], dict[str, str]]:
    """Node -> box, with block instances nested deeper than `depth` drawn as one box each."""
    insts = ir.meta.instances
    outermost_first: dict[str, list[str]] = {}
    group: dict[str, str] = {}
    boxes: dict[str, str] = {}
    for n in ir.nodes():
        c = outermost_first.get(n.scope)
        if c is None:
            c = outermost_first[n.scope] = ir.ancestors(n.scope)[::-1]
        if c and len(c) >= depth:
            box = c[depth - 1]
            group[n.id] = box
            boxes[box] = f"{box} : {insts[box].block}"
        else:
            group[n.id] = n.id
            boxes[n.id] = f"{n.local or n.id}\n{n.op}"
    return group, boxes


def collapsed_dot(ir: IR, max_boxes: int) -> tuple[str, int]:
    """The graph with block instances collapsed into boxes, at the deepest nesting level that fits in
    `max_boxes` (level 1: every top-level instance is one box)."""
    max_depth = max((len(p.split(".")) for p in ir.meta.instances if p), default=0)
    depth = max(1, max_depth)
    group, boxes = _groups(ir, depth)
    while len(boxes) > max_boxes and depth > 1:
        depth -= 1
        group, boxes = _groups(ir, depth)
    lines = [f"digraph {_q(ir.meta.model)} {{", *_HEAD]
    for b, label in boxes.items():
        lines.append(f"  {_q(b)} [label={_q(label)}];")
    seen = set()
    for u, v, _k, _a in ir.edges():
        a, b = group[u], group[v]
        if a != b and (a, b) not in seen:
            seen.add((a, b))
            lines.append(f"  {_q(a)} -> {_q(b)};")
    lines.append("}")
    return "\n".join(lines) + "\n", len(boxes)


def to_dot(ir: IR) -> str:
    insts = ir.meta.instances
    lines = [f'digraph "{ir.meta.model}" {{', *_HEAD]
    children: dict[str, list[str]] = {}
    for path, inst in insts.items():
        if path:
            children.setdefault(inst.parent or "", []).append(path)
    members: dict[str, list] = {}
    for n in ir.nodes():
        members.setdefault(n.scope, []).append(n)

    def node_line(n, indent):
        od = O.get(n.op)
        glyph = (od.glyph or od.name) if od else n.op
        shape = html.escape(", ".join(str(t) for t in n.outputs))
        nparams = sum(p.numel for p in n.params if p.kind == "param" and p.tied_to is None)
        extra = f'<BR/><FONT POINT-SIZE="8" COLOR="#666666">{nparams:,} params</FONT>' if nparams else ""
        fill = "#e7f0ff" if n.params else ("#eef8ee" if n.op in ("input", "block_input") else "#f4f6fb")
        label = (f'<<B>{html.escape(n.local or n.id)}</B><BR/>{html.escape(glyph)}'
                 f'<BR/><FONT POINT-SIZE="8">{shape}</FONT>{extra}>')
        return f'{indent}"{n.id}" [label={label}, fillcolor="{fill}"];'

    for event, path, depth in nested("", lambda p: children.get(p, [])):     # instances nest as clusters
        ind = "  " * depth
        if event == "leave":
            if path:
                lines.append(f"{ind}}}")
            continue
        if path:
            lines.append(f'{ind}subgraph "cluster_{path}" {{')
            lines.append(f'{ind}  label="{html.escape(path)} : {html.escape(insts[path].block)}"; style="rounded";'
                         f' color="#9999aa"; fontname="Helvetica"; fontsize=10;')
        for n in members.get(path, []):
            lines.append(node_line(n, ind + "  "))
    for u, v, _k, a in ir.edges():
        lab = html.escape(str(a.type)) if a.type is not None else ""
        lines.append(f'  "{u}" -> "{v}" [label="{lab}"];')
    for o in ir.meta.outputs:
        lines.append(f'  "out:{o.name}" [shape=plaintext, fillcolor="white", label="{html.escape(o.name)}"];')
        lines.append(f'  "{o.node}" -> "out:{o.name}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


FORMATS = ("svg", "png", "pdf", "dot", "gv")


def render(ir: IR, fmt: str = "svg", max_nodes: int = 2000) -> bytes:
    """The diagram in `fmt` (svg, png, pdf, dot). A graph beyond `max_nodes` is drawn with one box per
    top-level block instance; if that is still too large, TooLarge. RuntimeError when `dot` is missing."""
    fmt = fmt.lower().lstrip(".")
    if len(ir) <= max_nodes:
        src = to_dot(ir)
    else:
        src, boxes = collapsed_dot(ir, max_nodes)
        if boxes > max_nodes:
            raise TooLarge(boxes, max_nodes)
    if fmt in ("dot", "gv"):
        return src.encode("utf-8")
    if fmt not in FORMATS:
        raise ValueError(f"unknown diagram format {fmt!r}")
    if shutil.which("dot") is None:
        raise RuntimeError("Graphviz's `dot` is not installed (apt-get install graphviz); "
                           "write a .dot file instead")
    import graphviz

    return graphviz.Source(src).pipe(format=fmt)
