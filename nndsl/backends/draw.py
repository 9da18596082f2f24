"""Plain dataflow diagrams through Graphviz: one box per node, one cluster per block instance."""
from __future__ import annotations

import html
import shutil

from .. import ops as O
from ..ir import IR


def to_dot(ir: IR) -> str:
    insts = ir.meta.instances
    lines = [f'digraph "{ir.meta.model}" {{', '  rankdir=TB;',
             '  node [shape=box, style="rounded,filled", fillcolor="#f4f6fb", fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=8, color="#555566"];']
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

    def emit(path, depth):
        ind = "  " * (depth + 1)
        for n in members.get(path, []):
            lines.append(node_line(n, ind))
        for ch in children.get(path, []):
            inst = insts[ch]
            lines.append(f'{ind}subgraph "cluster_{ch}" {{')
            lines.append(f'{ind}  label="{html.escape(ch)} : {html.escape(inst.block)}"; style="rounded"; color="#9999aa";'
                         f' fontname="Helvetica"; fontsize=10;')
            emit(ch, depth + 1)
            lines.append(f"{ind}}}")

    emit("", 0)
    for u, v, _k, a in ir.g.edges(keys=True, data="attr"):
        lab = html.escape(str(a.type)) if a.type is not None else ""
        lines.append(f'  "{u}" -> "{v}" [label="{lab}"];')
    for o in ir.meta.outputs:
        lines.append(f'  "out:{o.name}" [shape=plaintext, fillcolor="white", label="{html.escape(o.name)}"];')
        lines.append(f'  "{o.node}" -> "out:{o.name}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(ir: IR, out: str) -> None:
    """Write the diagram; the format follows the extension (.svg, .png, .pdf, .dot)."""
    src = to_dot(ir)
    fmt = out.rsplit(".", 1)[-1].lower() if "." in out else "svg"
    if fmt in ("dot", "gv"):
        with open(out, "w") as f:
            f.write(src)
        return
    if shutil.which("dot") is None:
        raise RuntimeError("Graphviz's `dot` is not installed (apt-get install graphviz); "
                           "write a .dot file instead")
    import graphviz

    data = graphviz.Source(src).pipe(format=fmt)
    with open(out, "wb") as f:
        f.write(data)
