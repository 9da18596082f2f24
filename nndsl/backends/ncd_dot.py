"""A circuit diagram (nndsl/backends/ncd.py) as DOT with every position fixed, rendered by `neato -n2`.

Graphviz does no layout here: nodes get `pos`, edges get their Bézier `pos` and label position `lp`, and
clusters get `bb`. Every element carries the semantic classes of the diagram grammar (`ncd-wire`,
`ncd-op`, `ncd-learned`, `ncd-sep`, `ncd-cap`, `ncd-dot`, `ncd-copy`, `ncd-add`, `ncd-bar`, ...), which
Graphviz copies into the SVG, so that tests and users can query and restyle them.
"""
from __future__ import annotations

import shutil

from . import nested
from .ncd import CHAR, Diagram, Glyph

MARGIN = 24.0
FONT = "DejaVu Serif"
SANS = "DejaVu Sans"
FENCE_FILL = ("#f1eef9", "#fbeedd", "#e7f2ea", "#eaf1fb", "#f7e9ef")
FILL = {"linear": "#e6ebe9", "conv": "#e6ebe9", "block": "#dcebc9", "box": "#f4f4f4", "pool": "#f4f4f4",
        "index": "#cfe3f7", "reduce": "#f4f4f4", "conv-wedge": "#acdcf5", "pool-wedge": "#acdcf5"}


def _q(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ") + '"'


def _esc(s: str) -> str:
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


class _Frame:
    """Maps layout coordinates (y down, possibly negative x for input names) to Graphviz points (y up)."""

    def __init__(self, d: Diagram):
        xs = [0.0, d.width] + [t.x - len(t.text) * CHAR - 4 for t in d.texts if t.cls == "ncd-io-in"] + \
             [t.x + len(t.text) * CHAR + 4 for t in d.texts] + [f.x1 + 30 for f in d.fences]
        ys = [0.0, d.height] + [f.y0 for f in d.fences] + [g.y0 for g in d.glyphs]
        self.dx = MARGIN - min(xs)
        self.top = min(ys) - MARGIN
        self.W = max(xs) + self.dx + MARGIN
        self.H = max(ys) - self.top + MARGIN

    def x(self, x: float) -> float:
        return x + self.dx

    def y(self, y: float) -> float:
        return self.H - (y - self.top)

    def pt(self, p) -> str:
        return f"{self.x(p[0]):.1f},{self.y(p[1]):.1f}"


def to_dot(d: Diagram) -> str:
    fr = _Frame(d)
    out = [f"digraph {_q(d.title)} {{",
           f'  graph [bb="0,0,{fr.W:.1f},{fr.H:.1f}", outputorder=edgesfirst, splines=true, pad=0.1,'
           f' fontname="{SANS}", class="ncd"];',
           f'  node [label="", fontname="{FONT}", fontsize=11, shape=box, fixedsize=true, penwidth=1];',
           f'  edge [arrowhead=none, dir=none, penwidth=1.2, fontname="{FONT}", fontsize=10];',
           '  _a [shape=point, style=invis, width=0.01, pos="0,0!"];',
           '  _b [shape=point, style=invis, width=0.01, pos="0,0!"];']
    # fences as nested clusters; a glyph sits in the innermost fence of its column
    children: dict[str, list] = {}
    by_path = {f.path: f for f in d.fences}
    for f in d.fences:
        parent = f.parent if f.parent in by_path else ""
        children.setdefault(parent or "", []).append(f)
    scope_of = {gid: scope for (_L, _R, gid, scope) in d.columns}
    members: dict[str, list[Glyph]] = {}
    for g in d.glyphs:
        scope = scope_of.get(g.id.split("#", 1)[0], "")
        home = ""
        s = scope
        while s:
            if s in by_path:
                home = s
                break
            s = s.rsplit(".", 1)[0] if "." in s else ""
        members.setdefault(home, []).append(g)

    root = None                             # the fences' tree: the root stands for the whole diagram
    for event, f, depth in nested(root, lambda f: children.get(f.path if f is not None else "", [])):
        indent = "  " * (depth + 1)
        if event == "leave":
            if f is not None:
                out.append(f"{'  ' * depth}}}")
            continue
        if f is not None:
            fill = FENCE_FILL[(f.level - 1) % len(FENCE_FILL)]
            title = f.title + (f"  (×{f.count})" if f.count > 1 else "")
            out.append(f"{'  ' * depth}subgraph {_q('cluster_' + f.path)} {{")
            out.append(f'{indent}graph [bb="{fr.x(f.x0):.1f},{fr.y(f.y1):.1f},{fr.x(f.x1):.1f},{fr.y(f.y0):.1f}",'
                       f' label={_q(title)}, lp="{fr.x((f.x0 + f.x1) / 2):.1f},{fr.y(f.y0 + 10):.1f}",'
                       f' style="filled,rounded", fillcolor="{fill}", color="{fill}", fontsize=11,'
                       f' fontname="{SANS}", class="ncd-fence{" ncd-repeat" if f.count > 1 else ""}",'
                       f' id={_q("fence:" + f.path)}];')
        for g in members.get(f.path if f is not None else "", []):
            out.append(indent + _glyph(g, fr))
    for f in d.fences:                       # the paper's brackets around a repeated body
        if f.count > 1:
            h = f.y1 - f.y0
            for side, x, dx in (("l", f.x0 - 2, -8), ("r", f.x1 + 2, 8)):
                pts = [(x, f.y0), (x + dx, f.y0 + h * 0.25), (x + dx, f.y1 - h * 0.25), (x, f.y1)]
                out.append(f'  _a -> _b [id={_q(f"bracket:{side}:{f.path}")}, class="ncd-bracket", penwidth=2.2,'
                           f' pos="{" ".join(fr.pt(p) for p in pts)}"];')
    for s_i, s in enumerate(d.seps):
        out.append(f'  _a -> _b [id="sep{s_i}", class="ncd-sep", style=dashed, penwidth=1.8,'
                   f' pos="{" ".join(fr.pt(p) for p in s.points)}"];')
    for w in d.wires:
        out.append(f'  _a -> _b [id={_q(w.id)}, class="ncd-wire", label=<<I>{_esc(w.label)}</I>>,'
                   f' lp="{fr.pt(w.label_pos)}", pos="{" ".join(fr.pt(p) for p in w.points)}"];')
    for g in d.glyphs:
        if g.kind == "cap":
            out.append(f'  _a -> _b [id={_q(g.id)}, class="ncd-cap", penwidth=1.2,'
                       f' pos="{" ".join(fr.pt(p) for p in g.points)}"];')
        elif g.kind == "kernel":             # a window's kernel wire, from the wedge to the L
            out.append(f'  _a -> _b [id={_q(g.id)}, class="ncd-kernel", label=<<I>{_esc(g.label)}</I>>,'
                       f' lp="{fr.pt((g.cx, g.y0 - 5))}", pos="{" ".join(fr.pt(p) for p in g.points)}"];')
    for i, t in enumerate(d.texts):
        x = t.x - len(t.text) * CHAR / 2 if t.cls == "ncd-io-in" else \
            t.x + len(t.text) * CHAR / 2 if t.cls in ("ncd-io-out", "ncd-count") else t.x
        size = 12 if t.cls.startswith("ncd-io") else 13 if t.cls == "ncd-count" else 11
        out.append(f'  t{i} [id="text{i}", class={_q(t.cls)}, shape=plaintext, fixedsize=false, width=0.1,'
                   f' height=0.1, fontsize={size}, label={_q(t.text)}, pos="{fr.x(x):.1f},{fr.y(t.y):.1f}!"];')
    out.append("}")
    return "\n".join(out) + "\n"


def _glyph(g: Glyph, fr: _Frame) -> str:
    if g.kind in ("cap", "kernel"):
        return f"// {g.kind} {g.id}"
    w = max(g.x1 - g.x0, 1.0) / 72
    h = max(g.y1 - g.y0, 1.0) / 72
    pos = f'pos="{fr.x(g.cx):.1f},{fr.y(g.cy):.1f}!"'
    gid = _q(g.id)
    cls = ["ncd-op", f"ncd-{g.kind}"]
    if g.learned:
        cls.append("ncd-learned")
    if g.kind in ("dot", "add", "copy"):
        return f'{gid} [id={gid}, class="ncd-{g.kind}", shape=point, width=0.09, height=0.09, color=black, {pos}];'
    if g.kind == "bar":
        return (f'{gid} [id={gid}, class="{" ".join(cls)}", shape=box, style=filled, fillcolor=black, '
                f'width={w:.3f}, height={h:.3f}, {pos}];')
    if g.kind == "softmax":
        return (f'{gid} [id={gid}, class="{" ".join(cls)}", shape=triangle, orientation=90, width={w:.3f}, '
                f'height={h:.3f}, {pos}];')
    if g.kind == "marker":
        return (f'{gid} [id={gid}, class="{" ".join(cls)}", shape=plaintext, width={w:.3f}, height={h:.3f}, '
                f'fontsize=11, label={_q(g.label)}, {pos}];')
    label = f"<{g.html}>" if g.html else (f"<<B>{_esc(g.label)}</B>>" if g.learned else _q(g.label))
    if g.badges:
        badge = "<BR/>".join(f'<FONT POINT-SIZE="8" COLOR="#7a4a00">{_esc(b)}</FONT>' for b in g.badges)
        inner = g.html if g.html else (f"<B>{_esc(g.label)}</B>" if g.learned else _esc(g.label))
        label = f"<{inner}<BR/>{badge}>"
        h += 0.15 * len(g.badges)
    pen = "penwidth=2.2, " if g.learned else ""
    if g.kind == "norm":
        return (f'{gid} [id={gid}, class="{" ".join(cls)}", shape=circle, {pen}width={w:.3f}, height={w:.3f}, '
                f'fontsize=7, label={label}, {pos}];')
    shape = {"index": "pentagon", "conv-wedge": "trapezium", "pool-wedge": "trapezium"}.get(g.kind, "box")
    orient = ", orientation=270" if shape == "trapezium" else ", orientation=90" if shape == "pentagon" else ""
    fill = FILL.get(g.kind, "#f4f4f4")
    style = "filled,rounded" if g.kind == "block" else "filled"
    size = 13 if g.kind == "linear" else 11
    return (f'{gid} [id={gid}, class="{" ".join(cls)}", shape={shape}{orient}, style="{style}", fillcolor="{fill}", '
            f'{pen}width={w:.3f}, height={h:.3f}, fontsize={size}, label={label}, {pos}];')


class TooLarge(Exception):
    """More drawn ops than the limit, even with every block collapsed."""

    def __init__(self, n: int, limit: int):
        super().__init__(f"the diagram would have {n:,} boxes, more than the limit of {limit:,}")
        self.n, self.limit = n, limit


class Drawing:
    """A rendered diagram: `.save(path)`, `.svg()`, `.dot`, and inline display in Jupyter."""

    def __init__(self, ir, style: str = "circuit", options=None, max_items: int = 10_000, max_nodes: int = 2_000):
        from .ncd import Options, layout

        self.ir, self.style = ir, style
        self.options = options or Options()
        self.diagram = None
        if style == "circuit":
            opt = self.options
            n = _count_items(ir, opt)
            while n > max_items and opt.depth > 0:     # too many ops to draw: collapse a level more
                from dataclasses import replace

                opt = replace(opt, depth=opt.depth - 1)
                n = _count_items(ir, opt)
            if n > max_items:
                raise TooLarge(n, max_items)
            self.options = opt
            self.diagram = layout(ir, opt)
            self.dot = to_dot(self.diagram)
        elif style == "graph":
            from .draw import TooLarge as GraphTooLarge, collapsed_dot, to_dot as graph_dot

            if len(ir) <= max_nodes:
                self.dot = graph_dot(ir)
            else:
                self.dot, boxes = collapsed_dot(ir, max_nodes)
                if boxes > max_nodes:
                    raise GraphTooLarge(boxes, max_nodes)
        else:
            raise ValueError(f"unknown diagram style {style!r} (circuit or graph)")

    def render(self, fmt: str = "svg") -> bytes:
        fmt = fmt.lower().lstrip(".")
        if fmt not in FORMATS:
            raise ValueError(f"unknown diagram format {fmt!r}")
        if fmt in ("dot", "gv"):
            return self.dot.encode("utf-8")
        engine = "neato" if self.style == "circuit" else "dot"
        if shutil.which(engine) is None:
            raise RuntimeError(f"Graphviz is not installed (the `{engine}` program is missing): install the "
                               "`graphviz` package (apt-get install graphviz, brew install graphviz), or write a "
                               ".dot file")
        import graphviz

        if self.style == "circuit":
            return graphviz.Source(self.dot, engine="neato").pipe(format=fmt, neato_no_op=2)
        return graphviz.Source(self.dot).pipe(format=fmt)

    def svg(self) -> str:
        return self.render("svg").decode("utf-8")

    def _repr_svg_(self) -> str:
        return self.svg()

    def save(self, path, format: str | None = None) -> None:
        from pathlib import Path

        p = Path(path)
        p.write_bytes(self.render(format or p.suffix or "svg"))


FORMATS = ("svg", "png", "pdf", "dot", "gv")


def _count_items(ir, opt) -> int:
    from .ncd import _Plan

    return len(_Plan(ir, opt).items)
