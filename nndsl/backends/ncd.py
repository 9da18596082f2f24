"""Neural circuit diagrams (Abbott, TMLR 2024): the layout, a pure function from the IR to geometry.

Every tensor axis is a wire; an op sits only on the wires it acts on and every other wire passes by.
What an op consumes, contracts, joins and produces is read off the axis signature in its recipe
(nndsl/recipe.py) and the identities of the axes pass (nndsl/passes/axes.py); how it looks is its
record's `draw` kind (nndsl/ops/registry.py: `draw_kind`). Nothing here re-derives shapes.

The layout is syntax-directed, one drawn item per column, left to right in the IR's topological order:

- the live tensors form a stack of *bundles* (one wire per axis, in axis order, a dashed rule between
  bundles); before an item its input bundles are gathered next to each other, and wires move between
  columns as cubic Béziers with horizontal tangents;
- inside the item's column the wires it passes by run straight above and below its glyph, which spans
  only the wires it consumes and produces;
- a tensor used twice is copied (a dot per axis) in a column of its own; block instances are fences,
  nested as the instance tree says; runs of identical chained instances collapse to one body with a count.

The result is a `Diagram` of wires, glyphs, separators, fences and texts (y grows downwards, units are
points) that tests inspect directly and writers (nndsl/backends/ncd_dot.py) turn into DOT/SVG/PNG/PDF.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .. import ops as O
from ..ir import IR
from ..recipe import KEEP

PITCH = 24.0        # between two wires of one bundle
SEP = 14.0          # extra space between bundles (the dashed rule sits in it)
TOP = 40.0          # y of the first wire
MIN_GAP = 56.0      # horizontal room between two columns
CHAR = 6.2          # width of one label character (10 pt serif)
WEDGE = 34.0        # width of a convolution's window wedge (--detail)
INNER = 44.0        # length of its kernel wires, from the wedge to the L


# ----------------------------------------------------------------------------------------------- model
@dataclass(slots=True)
class Wire:
    """One axis on one segment: from where it starts (a port or the previous column) to where it ends."""

    id: str
    axis: int                    # identity (IR.axes)
    label: str                   # the axis name, or name=size
    tensor: str                  # "node:port" of the tensor it belongs to on this segment
    bundle: int                  # which drawn copy of that tensor
    index: int                   # axis index in the tensor
    segment: int                 # the column whose gap it crosses (one edge per wire per segment)
    points: list                 # cubic Bézier, 3n+1 (x, y)
    label_pos: tuple
    src: str = ""                # glyph id it leaves ("" for a pass-by continuation)
    dst: str = ""                # glyph id it enters ("" when it goes on)

    @property
    def x0(self) -> float:
        return self.points[0][0]

    @property
    def x1(self) -> float:
        return self.points[-1][0]


@dataclass(slots=True)
class Glyph:
    id: str
    kind: str                    # linear, conv, pool, box, block, norm, softmax, marker, dot, copy, add,
    x0: float                    # cap, bar, index, reduce, io
    y0: float
    x1: float
    y1: float
    label: str = ""              # plain text
    html: str = ""               # Graphviz HTML label (bold L with sub/superscripts)
    node: str = ""               # IR node (or instance path for a block)
    learned: bool = False
    consumes: list = field(default_factory=list)     # axis identities entering
    produces: list = field(default_factory=list)     # axis identities leaving
    points: list = field(default_factory=list)       # caps: the Bézier of the cap
    badges: list = field(default_factory=list)       # --annotate

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2


@dataclass(slots=True)
class Separator:
    points: list
    segment: int


@dataclass
class Fence:
    path: str
    title: str
    x0: float
    y0: float
    x1: float
    y1: float
    level: int
    count: int = 1               # > 1: a run of identical instances drawn once
    parent: Optional[str] = None


@dataclass(slots=True)
class Text:
    x: float
    y: float
    text: str
    cls: str                     # ncd-io (input/output names), ncd-count, ncd-symbol


@dataclass
class Diagram:
    title: str
    width: float = 0.0
    height: float = 0.0
    wires: list = field(default_factory=list)
    glyphs: list = field(default_factory=list)
    seps: list = field(default_factory=list)
    fences: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    columns: list = field(default_factory=list)      # (L, R, item id, scope)

    def glyph(self, gid: str) -> Glyph:
        for g in self.glyphs:
            if g.id == gid:
                return g
        raise KeyError(gid)


@dataclass
class Options:
    depth: int = 2               # instance levels drawn as fences; the next level is drawn as boxes
    expand: tuple = ()           # instances expanded whatever the depth
    detail: bool = False         # convolutions and pools as window wedge + L instead of a compact box
    sizes: bool = True           # name=size where the size is known
    annotate: tuple = ()         # badges: init, sparsity, symmetry


# ------------------------------------------------------------------------------------------- planning
@dataclass
class _Item:
    id: str
    kind: str                    # node, block, copy
    scope: str
    node: object = None          # ir.Node (kind node)
    path: str = ""               # instance path (kind block)
    inputs: list = field(default_factory=list)       # resolved tensor keys
    outputs: list = field(default_factory=list)      # tensor keys it produces
    absorbed: dict = field(default_factory=dict)     # arg -> param node folded into this glyph
    count: int = 1


def _key(node: str, port: int) -> str:
    return f"{node}:{port}"


class _Plan:
    """Which IR nodes become drawn items, which are aliases, what collapses."""

    def __init__(self, ir: IR, opt: Options):
        self.ir, self.opt = ir, opt
        insts = ir.meta.instances
        self.alias: dict[str, str] = {}
        self.level = {p: len(ir.ancestors(p)) for p in insts}
        expanded = set()
        for name in opt.expand:
            for p in insts:
                if p and (p == name or p.rsplit(".", 1)[-1] == name):
                    expanded.update(ir.ancestors(p))
        self.expanded = expanded
        self.count: dict[str, int] = {}
        self.hidden: set[str] = set()
        self._repeats()
        self.items: list[_Item] = []
        self.inputs: list[tuple[str, str]] = []        # (name, key)
        self._items()

    # -- runs of identical chained instances
    def _repeats(self) -> None:
        ir, insts = self.ir, self.ir.meta.instances
        kids: dict[str, list[str]] = {}
        for p, inst in insts.items():
            if p:
                kids.setdefault(inst.parent or "", []).append(p)
        consumers: dict[str, set] = {}
        for u, v, _k, a in ir.edges():
            consumers.setdefault(_key(u, a.src_port), set()).add(v)
        outs = {_key(o.node, o.port) for o in ir.meta.outputs}

        def chained(a: str, b: str) -> bool:
            A, B = insts[a], insts[b]
            if A.block != B.block or A.params != B.params or len(A.outputs) != len(B.inputs) or not A.outputs:
                return False
            if a in self.expanded or b in self.expanded:
                return False
            for (n, p), bi in zip(A.outputs, B.inputs):
                src = ir.inputs_of(bi)
                if not src or _key(*src[0]) != _key(n, p):
                    return False
                if consumers.get(_key(n, p), set()) - set(B.inputs) or _key(n, p) in outs:
                    return False
            return True

        for sibs in kids.values():
            i = 0
            while i < len(sibs):
                j = i
                while j + 1 < len(sibs) and chained(sibs[j], sibs[j + 1]):
                    j += 1
                if j > i:
                    first, last = sibs[i], sibs[j]
                    self.count[first] = j - i + 1
                    self.hidden.update(sibs[i + 1:j + 1])
                    for (n1, p1), (n2, p2) in zip(insts[first].outputs, insts[last].outputs):
                        self.alias[_key(n2, p2)] = _key(n1, p1)
                i = j + 1

    def resolve(self, key: str) -> str:
        seen = 0
        while key in self.alias and seen < 10_000:
            key = self.alias[key]
            seen += 1
        return key

    def _box_of(self, scope: str) -> Optional[str]:
        """The outermost enclosing instance drawn as one box, if any."""
        for p in self.ir.ancestors(scope)[::-1]:
            if self.level[p] > self.opt.depth and p not in self.expanded:
                return p
        return None

    def _items(self) -> None:
        ir = self.ir
        insts = ir.meta.instances
        anc_hidden: dict[str, bool] = {}
        boxes: dict[str, _Item] = {}
        # free parameters used only as an operand of a contraction are drawn inside it (a bold L)
        absorb: set[str] = set()
        for n in ir.nodes():
            if n.op == "param" and n.outputs:
                succ = list(ir.g.successors(n.id))      # (block inputs and outputs have no op record)
                ods = [O.get(ir.node(s).op) for s in succ]
                if ods and all(od is not None and O.draw_kind(od) == "contract" for od in ods):
                    absorb.add(n.id)
        for n in ir.nodes():
            h = anc_hidden.get(n.scope)
            if h is None:
                h = anc_hidden[n.scope] = any(p in self.hidden for p in ir.ancestors(n.scope))
            if h or not n.outputs:
                continue
            box = self._box_of(n.scope)
            if box is not None:
                if box not in boxes:
                    inst = insts[box]
                    it = _Item(id=box, kind="block", scope=insts[box].parent or "", path=box,
                               outputs=[_key(a, b) for a, b in inst.outputs], count=self.count.get(box, 1))
                    it.inputs = [self.resolve(_key(*ir.inputs_of(bi)[0])) for bi in inst.inputs if ir.inputs_of(bi)]
                    boxes[box] = it
                    self.items.append(it)
                continue
            od = O.get(n.op)
            if n.op == "input":
                self.inputs.append((n.local or n.id, _key(n.id, 0)))
                continue
            if n.op == "block_input" or od is not None and O.draw_kind(od) == "alias":
                src = ir.inputs_of(n.id)
                if src:
                    self.alias[_key(n.id, 0)] = self.resolve(_key(*src[0]))
                continue
            if n.id in absorb:
                continue
            ins = ir.inputs_of(n.id)
            it = _Item(id=n.id, kind="node", scope=n.scope, node=n,
                       inputs=[self.resolve(_key(u, p)) for u, p in ins],
                       outputs=[_key(n.id, o) for o in range(len(n.outputs))])
            it.absorbed = {i: u for i, (u, _p) in enumerate(ins) if u in absorb}
            it.inputs = [k for i, k in enumerate(it.inputs) if i not in it.absorbed]
            self.items.append(it)


# ------------------------------------------------------------------------------------------ roles
@dataclass
class _Roles:
    """Per item: which input wires pass by (to which output axis), which join at a dot, which are capped
    together, which the glyph consumes, which output axes it produces."""

    passby: dict = field(default_factory=dict)      # (o, k) -> (arg, axis)
    joins: list = field(default_factory=list)       # ((o, k), [(arg, axis), ...])
    caps: list = field(default_factory=list)        # [(arg, axis), ...]
    consumed: list = field(default_factory=list)    # [(arg, axis)]
    produced: list = field(default_factory=list)    # [(o, k)]


def _roles(it: _Item, ir: IR, kind: str, in_ranks: list[int], out_ranks: list[int]) -> _Roles:
    r = _Roles()
    if it.kind != "node" or it.node.recipe is None or it.node.recipe.sig is None:
        r.consumed = [(a, k) for a, n in enumerate(in_ranks) for k in range(n)]
        r.produced = [(o, k) for o, n in enumerate(out_ranks) for k in range(n)]
        return r
    node = it.node
    sig = node.recipe.sig
    # argument positions: the signature counts every input; absorbed parameters are not wires
    real = [i for i in range(len(in_ranks) + len(it.absorbed)) if i not in it.absorbed]
    pos = {orig: new for new, orig in enumerate(real)}
    acted = set()
    od = O.get(node.op)
    if od is not None and od.draw_on is not None and in_ranks:
        try:
            acted = {(0, k % in_ranks[0]) for k in od.draw_on(node.recipe.attrs, in_ranks[0])}
        except (KeyError, TypeError, ZeroDivisionError):
            acted = set()
    multi_out = len(out_ranks) > 1
    used = set()
    for o, axes in enumerate(sig.outs[:len(out_ranks)]):
        for k, ax in enumerate(axes[:out_ranks[o]]):
            refs = [(pos[f.arg], f.axis) for f in ax.refs if f.arg in pos and f.parts == 1]
            whole = ax.kind == KEEP and all(f.parts == 1 for f in ax.refs)
            if whole and len(refs) == 1 and len(ax.refs) == 1 and not multi_out and refs[0] not in acted \
                    and refs[0] not in used:
                r.passby[(o, k)] = refs[0]
                used.add(refs[0])
            elif whole and len(refs) >= 2 and kind in ("join", "contract", "attention", "bar") and not multi_out:
                r.joins.append(((o, k), refs))
                used.update(refs)
            else:
                r.produced.append((o, k))
    for g in sig.contracted:
        refs = [(pos[f.arg], f.axis) for f in g if f.arg in pos]
        if len(refs) >= 2 and kind in ("contract", "attention"):
            r.caps.append(refs)
            used.update(refs)
    for a, n in enumerate(in_ranks):
        for k in range(n):
            if (a, k) not in used:
                r.consumed.append((a, k))
    return r


# -------------------------------------------------------------------------------------------- layout
MAX_SYMBOL = 16          # a longer axis name (`relative_position_bias_table`) is labelled by its size


def axis_label(ir: IR, aid: int, sizes: bool = True) -> str:
    """What a wire says: the axis name, with `=size` when the size is known; a generated name (`x[1]`)
    or a name longer than MAX_SYMBOL gives way to the size alone."""
    a = ir.axes.get(aid)
    if a is None:
        return "?"
    name = a.name
    if a.kind == "merge" and name.startswith("(") and name.endswith(")"):
        name = "·".join(name[1:-1].split())
    size = a.size
    known = size is not None and getattr(size, "is_const", False)
    primes, cur, seen = 0, a, {aid}
    while cur.kind == "derive" and len(cur.parents) == 1 and cur.parents[0] in ir.axes and primes < 8:
        if cur.parents[0] in seen:                             # a size-preserving derive of itself
            break
        seen.add(cur.parents[0])
        p = ir.axes[cur.parents[0]]
        if p.name != name:
            break
        if str(p.size) != str(cur.size):                       # a strided window: H -> H′ -> H″
            primes += 1
        cur = p
    if primes:
        expr = str(size)
        name = expr if not known and len(expr) <= 8 else name + ("′" * primes if primes < 3 else f"⁽{primes}⁾")
    if known and (name.endswith("]") and "[" in name or len(name) > MAX_SYMBOL):
        return str(size.value)     # a generated name, or one too long to be a symbol: the size says more
    if sizes and known and name != str(size.value):
        return f"{name}={size.value}"
    return name



class _Window:
    """Rows of a window op drawn in full: axis refs -> row (in pitches from the glyph's top row)."""

    __slots__ = ("spatial_in", "spatial_out", "in_row", "out_row", "rows", "kernel", "box_w")


def _base(name: str) -> str:
    """An axis name without its size or primes: `H′=112` -> `H`."""
    return name.split("=", 1)[0].rstrip("′″⁽⁾0123456789") or name


class _Live:
    """A wire between columns: where its current segment starts."""

    __slots__ = ("axis", "label", "index", "sx", "sy", "src")

    def __init__(self, axis: int, label: str, index: int, sx: float, sy: float, src: str = ""):
        self.axis, self.label, self.index, self.sx, self.sy, self.src = axis, label, index, sx, sy, src


class _Bundle:
    __slots__ = ("id", "tensor", "wires")

    def __init__(self, bid: int, tensor: str, wires: list):
        self.id, self.tensor, self.wires = bid, tensor, wires


def bezier(waypoints: list) -> list:
    """A cubic Bézier through waypoints with horizontal tangents at each (3n+1 points)."""
    pts = [waypoints[0]]
    for (x1, y1), (x2, y2) in zip(waypoints, waypoints[1:]):
        dx = (x2 - x1) * 0.45
        pts += [(x1 + dx, y1), (x2 - dx, y2), (x2, y2)]
    return pts


_THIN = ("cap", "dot", "copy", "add", "marker", "kernel")       # glyphs a label may sit next to


def _label_spots(waypoints: list, tw: float, src: str, dst: str):
    """Where a wire's label may sit (its centre, 5 pt above the wire), best first, lazily. Labels sit on
    level stretches: just after the start when the wire leaves a port or runs level there, else where it
    has arrived; then the other ends and middles of its level stretches, then steps along them, then beside
    its bends."""
    (x0, y0), (x1, y1) = waypoints[0], waypoints[1]
    fans = src.startswith("copy:")          # several wires leave one dot: label them where they arrive
    if not fans and (abs(y1 - y0) < 0.5 or src or dst):
        first = (x0, y0)
    elif len(waypoints) >= 3 and abs(waypoints[-1][1] - waypoints[-2][1]) < 0.5:
        first = waypoints[-2]
    else:
        first = (waypoints[-1][0] - tw - 8, waypoints[-1][1])
    xe = waypoints[-1][0]
    yield (max(min(first[0] + 4 + tw / 2, xe - 4 - tw / 2), x0 + 4 + tw / 2), first[1] - 5)   # within its span
    runs = [(xa, xb, ya) for (xa, ya), (xb, yb) in zip(waypoints, waypoints[1:])
            if abs(ya - yb) < 0.5 and xb - xa >= tw + 8]
    level: list[list[float]] = []           # level stretches, consecutive level pieces joined: a wire that
    for (xa, ya), (xb, yb) in zip(waypoints, waypoints[1:]):        # passes several columns level has room
        if abs(ya - yb) >= 0.5:                                     # across them
            continue
        if level and abs(level[-1][1] - xa) < 0.5 and abs(level[-1][2] - ya) < 0.5:
            level[-1][1] = xb
        else:
            level.append([xa, xb, ya])
    runs += [(xa, xb, y) for xa, xb, y in level if xb - xa >= tw + 8 and (xa, xb, y) not in runs]
    for xa, xb, y in runs[::-1] if fans else runs:
        yield from ((xa + 4 + tw / 2, y - 5), (xb - 4 - tw / 2, y - 5), ((xa + xb) / 2, y - 5))
    for xa, xb, y in runs:
        n = min(8, int((xb - xa - tw - 8) // 12))
        yield from ((xa + 4 + tw / 2 + 12 * k, y - 5) for k in range(1, n + 1))
    if abs(y1 - y0) >= 0.5:                 # just after a bending start (the tangent is level there)
        yield (x0 + 4 + tw / 2, y0 - 5)
    xe, ye = waypoints[-1]
    if abs(ye - waypoints[-2][1]) >= 0.5:   # beside its end
        yield from ((xe - 4 - tw / 2, ye - 5), (xe - 4 - tw / 2, ye + 12))
    for (xa, ya), (xb, yb) in zip(waypoints, waypoints[1:]):      # on a bend, above its middle
        if abs(ya - yb) >= 0.5:
            for t in (0.5, 0.3, 0.7):
                x, y = _cubic([(xa, ya), (xa + (xb - xa) * 0.45, ya), (xb - (xb - xa) * 0.45, yb), (xb, yb)], t)
                yield (x - tw / 2 - 4 if yb < ya else x + tw / 2 + 4, y - 6)   # clear of the bend


class _Grid:
    """Boxes (x0, y0, x1, y1, owner) hashed into 48 pt cells, for collision tests of labels."""

    CELL = 48.0

    def __init__(self):
        self.cells: dict[int, list] = {}

    def add(self, b, owner=None) -> None:
        c, cells, e = self.CELL, self.cells, (b[0], b[1], b[2], b[3], owner)
        for i in range(int(b[0] // c), int(b[2] // c) + 1):
            for j in range(int(b[1] // c), int(b[3] // c) + 1):
                q = cells.get(i * 1_000_003 + j)            # one int key per cell: no tuple to build
                if q is None:
                    cells[i * 1_000_003 + j] = [e]
                else:
                    q.append(e)

    def owners(self, b, pad: float = 0.0) -> list:
        """Owners of the boxes that intersect `b` (pad < 0 keeps a margin), each once."""
        c, cells = self.CELL, self.cells
        bx0, by0, bx1, by1 = b[0] + pad, b[1] + pad, b[2] - pad, b[3] - pad
        out, seen = [], set()
        for i in range(int(bx0 // c), int(bx1 // c) + 1):
            for j in range(int(by0 // c), int(by1 // c) + 1):
                for o in cells.get(i * 1_000_003 + j, ()):
                    if bx0 < o[2] and o[0] < bx1 and by0 < o[3] and o[1] < by1 and id(o) not in seen:
                        seen.add(id(o))
                        out.append(o[4])
        return out

    def hits(self, b, pad: float = 0.0, skip=-1) -> bool:
        c, cells = self.CELL, self.cells
        bx0, by0, bx1, by1 = b[0] + pad, b[1] + pad, b[2] - pad, b[3] - pad     # pad < 0: keep a margin
        for i in range(int(bx0 // c), int(bx1 // c) + 1):
            for j in range(int(by0 // c), int(by1 // c) + 1):
                for o in cells.get(i * 1_000_003 + j, ()):
                    if bx0 < o[2] and o[0] < bx1 and by0 < o[3] and o[1] < by1 and o[4] != skip:
                        return True
        return False


def _cubic(p: list, t: float) -> tuple[float, float]:
    u = 1 - t
    a, b, c, d = u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t
    return (a * p[0][0] + b * p[1][0] + c * p[2][0] + d * p[3][0], a * p[0][1] + b * p[1][1] + c * p[2][1] + d * p[3][1])


class _Layout:
    def __init__(self, ir: IR, opt: Options):
        self.ir, self.opt = ir, opt
        self.plan = _Plan(ir, opt)
        self.d = Diagram(title=ir.meta.model)
        self.stack: list[_Bundle] = []
        self.avail: dict[str, list[_Bundle]] = {}
        self.uses: dict[str, int] = {}
        self.consumer_scopes: dict[str, list[str]] = {}
        self.R = 0.0                      # right edge of the last column
        self.segment = 0
        self.nb = 0
        self.nw = 0
        self._labels: dict[int, str] = {}
        self._label_spots: list[list[tuple[float, float]]] = []     # per wire, best first

    # -- labels
    def label(self, aid: int) -> str:
        lab = self._labels.get(aid)
        if lab is None:
            lab = self._labels[aid] = axis_label(self.ir, aid, self.opt.sizes)
        return lab


    def tensor_axes(self, key: str) -> list[int]:
        node, port = key.rsplit(":", 1)
        n = self.ir.node(node)
        p = int(port)
        if p < len(n.axes):
            return list(n.axes[p])
        return []

    # -- bundles
    def new_bundle(self, key: str, wires: list) -> _Bundle:
        self.nb += 1
        return _Bundle(self.nb, key, wires)

    def take(self, key: str) -> _Bundle:
        q = self.avail.get(key)
        if q:
            b = q.pop(0)
            return b
        # never produced (an upstream node failed, or an unsupported construct): a stub from the left
        axes = self.tensor_axes(key)
        b = self.new_bundle(key, [_Live(a, self.label(a), i, self.R, 0.0) for i, a in enumerate(axes)])
        self.stack.append(b)
        self._restack_tail(b)
        return b

    def _restack_tail(self, b: _Bundle) -> None:
        y = self._bottom() + SEP
        for w in b.wires:
            w.sy = y
            y += PITCH

    def _bottom(self) -> float:
        ys = [w.sy for b in self.stack for w in b.wires]
        return max(ys) if ys else TOP - PITCH

    # -- main loop
    def run(self) -> Diagram:
        plan = self.plan
        for it in plan.items:
            for k in it.inputs:
                self.uses[k] = self.uses.get(k, 0) + 1
                self.consumer_scopes.setdefault(k, []).append(it.scope)
        for o in self.ir.meta.outputs:
            k = plan.resolve(_key(o.node, o.port))
            self.uses[k] = self.uses.get(k, 0) + 1
            self.consumer_scopes.setdefault(k, []).append("")
        # inputs enter at the left edge, stacked in declaration order
        y = TOP
        for name, key in plan.inputs:
            axes = self.tensor_axes(key)
            wires = []
            for i, a in enumerate(axes):
                wires.append(_Live(a, self.label(a), i, 0.0, y))
                y += PITCH
            b = self.new_bundle(key, wires)
            self.stack.append(b)
            self.avail.setdefault(key, []).append(b)
            mid = (wires[0].sy + wires[-1].sy) / 2 if wires else y
            self.d.texts.append(Text(-8.0, mid, name, "ncd-io-in"))
            y += SEP
        for key in [k for _n, k in plan.inputs]:
            self._copy_if_shared(key)
        for it in plan.items:
            self.item(it)
        self.finish()
        self.place_labels()
        self.fences()
        return self.d

    # -- one column
    def _gather(self, keys: list[str]) -> list[_Bundle]:
        got = [self.take(k) for k in keys]
        if not got:
            return got
        ids = {id(b) for b in got}
        first = min(self.stack.index(b) for b in got)
        rest = [b for b in self.stack if id(b) not in ids]
        before = [b for b in self.stack[:first] if id(b) not in ids]
        self.stack = before + got + rest[len(before):]
        return got

    def _ys(self, bundles: list[_Bundle]) -> dict[int, float]:
        """Stacked ys of bundles, top down."""
        out: dict[int, float] = {}
        y = TOP
        for i, b in enumerate(bundles):
            if i:
                y += SEP
            for w in b.wires:
                out[id(w)] = y
                y += PITCH
            if not b.wires:
                y += PITCH / 2
        return out

    def item(self, it: _Item) -> None:
        ir = self.ir
        group = self._gather(it.inputs)
        gi = self.stack.index(group[0]) if group else len(self.stack)
        above, below = self.stack[:gi], self.stack[gi + len(group):]
        in_ranks = [len(b.wires) for b in group]
        out_axes = [self.tensor_axes(k) for k in it.outputs]
        out_ranks = [len(a) for a in out_axes]
        kind = self._kind(it)
        roles = _roles(it, ir, kind, in_ranks, out_ranks)
        if kind in ("cross", "marker") and (roles.consumed or roles.produced or roles.joins):
            kind = "box"
        # vertical arrangement inside the group: pass-by wires above and below the glyph's rows
        first_made = min([ok for ok in roles.produced] + [ok for ok, _ in roles.joins], default=None)
        pass_items = sorted(roles.passby.items())
        pass_above = [(ok, src) for ok, src in pass_items if first_made is None or ok < first_made]
        pass_below = [(ok, src) for ok, src in pass_items if first_made is not None and ok > first_made]
        cap_wires = [ref for g in roles.caps for ref in g]
        in_rows = cap_wires + roles.consumed
        boxed = kind not in ("cross", "marker", "join", "contract", "attention")
        # rows of the glyph: a box takes its inputs and outputs side by side; wires that meet at dots
        # (joins) sit under the caps, so that a dot never lands on a cap
        first_out = 0 if boxed else len(in_rows)
        out_rows = sorted([ok for ok, _ in roles.joins] + roles.produced)     # in output axis order
        rows = max(len(in_rows), first_out + len(out_rows), 0 if kind in ("cross", "marker") else 1)
        win = self._window(it, kind, roles) if kind in ("conv", "pool") and self.opt.detail else None
        if win is not None:                   # the window wedge: its rows are laid out in `_window`
            rows = win.rows
        y = TOP
        ys_above = self._ys(above)
        if above:
            y = max(ys_above.values(), default=TOP - PITCH) + PITCH + SEP
        slot: dict[tuple, float] = {}         # (arg, axis) of pass-by wires -> y
        for _ok, src in pass_above:
            slot[src] = y
            y += PITCH
        top_block = y
        y += rows * PITCH
        for _ok, src in pass_below:
            slot[src] = y
            y += PITCH
        block_y0, block_y1 = top_block - PITCH / 2 + 3, top_block + max(rows, 1) * PITCH - PITCH / 2 - 3
        # bundles below keep their order under the group
        ys_below = self._ys(below)
        shift = y + (SEP if (group or rows) else 0) - TOP
        for w in ys_below:
            ys_below[w] += shift
        # width of the glyph and the gap before it
        label, html, learned, glyph_w = self._glyph_text(it, kind)
        if win is not None:
            glyph_w = WEDGE + INNER + win.box_w
        badges = self._badges(it)                      # --annotate: the box holds its badges (8 pt)
        if badges and kind not in ("marker", "dot", "add", "copy", "bar", "norm"):
            glyph_w = max(glyph_w, max(len(b) for b in badges) * BADGE_CHAR + 12)
        if kind == "norm":                    # the circle spans its wires and fits its column
            glyph_w = max(glyph_w, (block_y1 - block_y0) + 4)
        targets: dict[int, tuple[float, Optional[float]]] = {}  # id(live) -> (y at L, x of its port or None)
        for b in above:
            for w in b.wires:
                targets[id(w)] = (ys_above[id(w)], None)
        for b in below:
            for w in b.wires:
                targets[id(w)] = (ys_below[id(w)], None)
        row_y = {}
        for i, ref in enumerate(in_rows):
            row_y[ref] = top_block + i * PITCH
        if win is not None:
            row_y = {ref: top_block + r * PITCH for ref, r in win.in_row.items()}
        for a, b in enumerate(group):
            for k, w in enumerate(b.wires):
                if (a, k) in slot:
                    targets[id(w)] = (slot[(a, k)], None)
                elif (a, k) in row_y:
                    targets[id(w)] = (row_y[(a, k)], -1.0)
                else:                                   # joined at a dot: goes straight into it
                    targets[id(w)] = (top_block, -2.0)
        moves = [abs(t[0] - w.sy) for b in self.stack for w in b.wires for t in (targets.get(id(w)),) if t]
        longest = max([len(w.label) for b in self.stack for w in b.wires] + [1])
        gap = max(MIN_GAP, 1.1 * max(moves, default=0), longest * CHAR + 14)
        L = self.R + gap
        R = L + glyph_w
        self.segment += 1
        seg = self.segment
        gid = it.id
        # joins: a dot per joined axis, on its output row
        out_y = {ok: top_block + (first_out + j) * PITCH for j, ok in enumerate(out_rows)}
        if win is not None:
            out_y = {ok: top_block + r * PITCH for ok, r in win.out_row.items()}
        dots: dict[tuple, tuple[float, float]] = {}
        jx = L + glyph_w - 8 if roles.caps else L + glyph_w / 2
        for ok, refs in roles.joins:
            dots[ok] = (jx, out_y[ok])
        for ok, refs in roles.joins:
            for ref in refs:
                row_y.setdefault(ref, dots[ok][1])
        join_of = {ref: ok for ok, refs in roles.joins for ref in refs}
        # emit this segment's edges: every live wire once
        ends: dict[int, tuple[float, float]] = {}
        end_at: dict[int, str] = {}
        join_index = {ok: j for j, (ok, _refs) in enumerate(roles.joins)}
        cap_of = {ref: c for c, refs in enumerate(roles.caps) for ref in refs}
        for a, b in enumerate(group):
            for k, w in enumerate(b.wires):
                if (a, k) in join_of:
                    ends[id(w)] = dots[join_of[(a, k)]]
                    end_at[id(w)] = f"{gid}#{join_index[join_of[(a, k)]]}"
                elif win is not None and (a, k) in row_y and (a, k) not in slot:
                    spatial = (a, k) in win.spatial_in          # channels run level under the wedge
                    ends[id(w)] = (L, row_y[(a, k)]) if spatial else \
                        [(L, row_y[(a, k)]), (L + WEDGE + INNER, row_y[(a, k)])]
                    end_at[id(w)] = f"{gid}#wedge" if spatial else gid
                elif (a, k) in row_y and (a, k) not in slot:
                    ends[id(w)] = (L, row_y[(a, k)])
                    if kind == "attention" and cap_of.get((a, k)) == len(roles.caps) - 1:
                        ends[id(w)] = [(L, row_y[(a, k)]), (L + 20, row_y[(a, k)])]   # past the softmax
                    if (a, k) in cap_of:
                        end_at[id(w)] = f"{gid}#cap{cap_of[(a, k)]}"
                    elif not boxed:                   # wires-only glyphs put what else they use in a box
                        end_at[id(w)] = f"{gid}#box"
        passing: dict[int, float] = {}
        for b in self.stack:
            for w in b.wires:
                ty = targets.get(id(w), (w.sy, None))[0]
                end = ends.get(id(w))
                if end is not None:
                    pts = [(w.sx, w.sy)] + ([(self.R, w.sy)] if w.sx < self.R - 0.5 else []) + \
                        (end if isinstance(end, list) else [end])
                    dst = end_at.get(id(w), gid)
                else:
                    pts = [(w.sx, w.sy)] + ([(self.R, w.sy)] if w.sx < self.R - 0.5 else []) + [(L, ty), (R, ty)]
                    dst = ""
                    passing[id(w)] = ty
                self._wire(w, b, pts, seg, dst)
        self._seps(seg, L, R, group, targets)
        # the glyph
        if win is not None:
            self._draw_window(it, kind, win, label, html, L, R, top_block, group, out_axes, roles)
        else:
            self._draw_glyph(it, kind, roles, label, html, learned, L, R, block_y0, block_y1, top_block, row_y,
                             dots, group, out_axes, slot, out_y)
        # outputs: pass-by wires continue, produced wires start at the glyph
        new_bundles = []
        for o, axes in enumerate(out_axes):
            wires = []
            for k, aid in enumerate(axes):
                src = roles.passby.get((o, k))
                if src is not None:
                    a, i = src
                    w0 = group[a].wires[i]
                    wires.append(_Live(aid, self.label(aid), k, R, passing.get(id(w0), slot[src])))
                elif (o, k) in dots:
                    x, yy = dots[(o, k)]
                    wires.append(_Live(aid, self.label(aid), k, x, yy, f"{gid}#{join_index[(o, k)]}"))
                elif win is not None and (o, k) in win.spatial_out:      # leaves the wedge, runs above the L
                    wires.append(_Live(aid, self.label(aid), k, L + WEDGE, out_y[(o, k)], f"{gid}#wedge"))
                else:
                    wires.append(_Live(aid, self.label(aid), k, R, out_y.get((o, k), top_block), gid))
            new_bundles.append(self.new_bundle(it.outputs[o], wires))
        # unrelated bundles keep going from where they passed
        for b in above + below:
            for w in b.wires:
                w.sx, w.sy, w.src = R, passing.get(id(w), w.sy), ""
        self.stack = above + [b for b in new_bundles if self.uses.get(b.tensor, 0) > 0] + below
        self.d.columns.append((L, R, gid, it.scope))
        self.R = R
        for b in new_bundles:
            if self.uses.get(b.tensor, 0) > 0:
                self.avail.setdefault(b.tensor, []).append(b)
            else:                        # nothing uses it: a short stub
                for w in b.wires:
                    self._wire(w, b, [(w.sx, w.sy), (w.sx + 16, w.sy)], seg + 1, "")
        for b in new_bundles:
            self._copy_if_shared(b.tensor)

    def _kind(self, it: _Item) -> str:
        if it.kind == "block":
            return "block"
        if it.kind == "copy":
            return "copy"
        od = O.get(it.node.op)
        kind = O.draw_kind(od) if od is not None else "box"
        if kind == "contract" and it.absorbed:
            return "linear"
        if kind == "join" and len(it.inputs) == 1:
            return "marker"
        return kind

    def _wire(self, w: _Live, b: _Bundle, waypoints: list, seg: int, dst: str) -> None:
        self.nw += 1
        wire = Wire(id=f"w{self.nw}", axis=w.axis, label=w.label, tensor=b.tensor, bundle=b.id, index=w.index,
                    segment=seg, points=bezier(waypoints), label_pos=(0.0, 0.0), src=w.src, dst=dst)
        self.d.wires.append(wire)
        self._label_spots.append((waypoints, len(w.label) * CHAR, w.src, dst))

    def place_labels(self) -> None:
        """Each wire's label goes to the first of its spots (see `_label_spots`) that is clear of the glyphs,
        the texts, the labels already placed (left to right) and the bends of other wires; failing that, to
        the first spot clear of glyphs, texts and labels; failing that, to its first spot."""
        solid, bends = _Grid(), _Grid()
        for g in self.d.glyphs:
            if g.kind not in _THIN:
                solid.add((g.x0, g.y0, g.x1, g.y1))
            elif g.kind == "kernel":
                solid.add((g.cx - len(g.label) * CHAR / 2, g.y0 - 10, g.cx + len(g.label) * CHAR / 2, g.y0))
        for t in self.d.texts:
            solid.add(text_box(t))
        lines = [(i, w.points, True) for i, w in enumerate(self.d.wires)] + \
            [(-2, sp.points, False) for sp in self.d.seps]
        for i, pts, bends_only in lines:
            for j in range(0, len(pts) - 3, 3):
                (xa, ya), (xb, yb) = pts[j], pts[j + 3]
                if bends_only and abs(ya - yb) < 0.5:      # level wires run clear of the labels above
                    continue
                n = max(2, int(abs(xb - xa) // 8))
                for k in range(n + 1):      # samples of the bend (x runs monotonically along it)
                    t = k / n
                    x, y = _cubic(pts[j:j + 4], t)
                    bends.add((x, y, x, y), i)
        by_seg: list[list[int]] = [[] for _ in range(self.segment + 2)]
        for i, w in enumerate(self.d.wires):               # left to right: a bucket per segment
            by_seg[w.segment].append(i)
        order = [i for b in by_seg for i in b]
        last: dict[tuple[int, int], tuple] = {}       # (axis, row) -> the box of its last label there

        def near(b, axis) -> bool:                    # the same axis labelled on the same row within 36 pt
            prev = last.get((axis, round(b[3])))
            return prev is not None and b[0] - prev[2] < 36

        for i in order:
            wire = self.d.wires[i]
            pick = first = good = clear = None        # best: clear of all, not next to its last label
            for x, y in _label_spots(*self._label_spots[i]):
                b = _box_at(x, y, wire.label)
                first = first or b
                if solid.hits(b, -2.0):
                    continue
                clear = clear or b
                if not bends.hits(b, 0.0, skip=i):
                    if not near(b, wire.axis):
                        pick = b
                        break
                    good = good or b
            pick = pick or good or clear or first
            wire.label_pos = ((pick[0] + pick[2]) / 2, (pick[1] + pick[3]) / 2)
            solid.add(pick)
            last[(wire.axis, round(pick[3]))] = pick

    def _seps(self, seg: int, L: float, R: float, group: list, targets: dict) -> None:
        """A dashed rule between each two neighbouring bundles, following the midline of their wires; it
        ends where the tuple is consumed."""
        gids = {id(b) for b in group}
        for up, down in zip(self.stack, self.stack[1:]):
            if not up.wires or not down.wires:
                continue
            a, b = up.wires[-1], down.wires[0]
            ya0, yb0 = a.sy, b.sy
            ya1 = targets.get(id(a), (ya0,))[0]
            yb1 = targets.get(id(b), (yb0,))[0]
            consumed = id(up) in gids and id(down) in gids
            y1 = (ya1 + yb1) / 2
            if abs(ya0 - ya1) < 0.5 and abs(yb0 - yb1) < 0.5:      # both run level: the whole gap
                x0 = max(a.sx, b.sx, self.R)
            else:                                                   # only once they have arrived
                x0 = L - min(24.0, (L - self.R) / 3)
            x1 = L - 2 if consumed else R
            if x1 > x0 + 1:
                self.d.seps.append(Separator(bezier([(x0, y1), (x1, y1)]), seg))

    def _copy_if_shared(self, key: str) -> None:
        """A tensor used n > 1 times splits into n bundles at a column of copy dots."""
        n = self.uses.get(key, 0)
        q = self.avail.get(key, [])
        if n < 2 or len(q) != 1:
            return
        b = q[0]
        gi = self.stack.index(b)
        above, below = self.stack[:gi], self.stack[gi + 1:]
        ys_above = self._ys(above)
        y = max(ys_above.values(), default=TOP - PITCH) + PITCH + (SEP if above else 0)
        copies_y = []
        for c in range(n):
            copies_y.append([y + k * PITCH for k in range(len(b.wires))])
            y += len(b.wires) * PITCH + SEP
        ys_below = self._ys(below)
        shift = y - TOP
        targets = {id(w): (ys_above[id(w)], None) for bb in above for w in bb.wires}
        targets.update({id(w): (ys_below[id(w)] + shift, None) for bb in below for w in bb.wires})
        moves = [abs(copies_y[0][k] - w.sy) for k, w in enumerate(b.wires)] + \
                [abs(targets[id(w)][0] - w.sy) for bb in above + below for w in bb.wires]
        gap = max(MIN_GAP * 0.6, 1.1 * max(moves, default=0), max([len(w.label) for w in b.wires] + [1]) * CHAR + 14)
        L = self.R + gap
        R = L + 12
        self.segment += 1
        seg = self.segment
        scopes = self.consumer_scopes.get(key, [""])
        scope = _common_scope(scopes)
        gid = f"copy:{key}"
        passing = {}
        for bb in self.stack:
            for k, w in enumerate(bb.wires):
                if bb is b:
                    dot = (L + 6, copies_y[0][k])
                    pts = [(w.sx, w.sy)] + ([(self.R, w.sy)] if w.sx < self.R - 0.5 else []) + [dot]
                    self._wire(w, bb, pts, seg, gid)
                else:
                    ty = targets[id(w)][0]
                    pts = [(w.sx, w.sy)] + ([(self.R, w.sy)] if w.sx < self.R - 0.5 else []) + [(L, ty), (R, ty)]
                    self._wire(w, bb, pts, seg, "")
                    passing[id(w)] = ty
        self._seps(seg, L, R, [], targets)
        for k, w in enumerate(b.wires):
            g = Glyph(id=f"{gid}#{k}", kind="copy", x0=L + 2.5, y0=copies_y[0][k] - 3.5, x1=L + 9.5,
                      y1=copies_y[0][k] + 3.5, node=key, consumes=[w.axis], produces=[w.axis] * n)
            self.d.glyphs.append(g)
        new = []
        for c in range(n):
            new.append(self.new_bundle(key, [_Live(w.axis, w.label, w.index, L + 6, copies_y[0][k], f"{gid}#{k}")
                                             for k, w in enumerate(b.wires)]))
        # the copies start at the dots and fan out in the next gap to their own rows
        for c, nb in enumerate(new):
            for k, w in enumerate(nb.wires):
                w.sy = copies_y[0][k]
        for bb in above + below:
            for w in bb.wires:
                w.sx, w.sy, w.src = R, passing[id(w)], ""
        self.stack = above + new + below
        self.avail[key] = new
        self.d.columns.append((L, R, gid, scope))
        self.R = R

    def _window(self, it: _Item, kind: str, roles: "_Roles") -> Optional["_Window"]:
        """The rows of a convolution or pooling drawn in full (`--detail`): the spatial wires enter the middle
        of a wedge, which gives out the strided spatial wires (top rows) and one kernel wire per spatial axis
        (the rows under them); the kernel wires and the channels (which run under the wedge) meet in a bold
        L (convolution) or a Max / 𝔼 box (pooling), which gives out the new channels."""
        n = it.node
        if it.kind != "node" or n.recipe is None or n.recipe.sig is None or len(n.recipe.sig.outs) != 1:
            return None
        spatial_in, spatial_out = [], []
        for k, ax in enumerate(n.recipe.sig.outs[0]):
            if ax.kind == "derive" and len(ax.refs) == 1 and ax.refs[0].arg == 0 and (0, k) in roles.produced:
                spatial_out.append((0, k))
                spatial_in.append((0, ax.refs[0].axis))
        S = len(spatial_in)
        if not S or not set(spatial_in) <= set(roles.consumed):
            return None
        chan_in = [r for r in roles.consumed if r not in spatial_in]
        chan_out = [p for p in roles.produced if p not in spatial_out]
        if kind == "pool" and (chan_in or chan_out):
            return None
        w = _Window()
        w.spatial_in, w.spatial_out = spatial_in, spatial_out
        w.in_row = {r: S / 2 - 0.5 + i for i, r in enumerate(spatial_in)}
        w.in_row.update({r: 2 * S + j for j, r in enumerate(chan_in)})
        w.out_row = {p: i for i, p in enumerate(spatial_out)}
        mid = S + (S + len(chan_in) - 1) / 2 - (len(chan_out) - 1) / 2
        w.out_row.update({p: mid + j for j, p in enumerate(chan_out)})
        w.rows = 2 * S + len(chan_in)
        a = n.recipe.attrs
        k = a.get("kernel")
        w.kernel = list(k) if isinstance(k, (list, tuple)) else [k] * S
        g = n.recipe.attrs.get("groups", 1)
        w.box_w = (58.0 if isinstance(g, int) and g > 1 else 40.0) if kind == "conv" else 34.0
        return w

    def _draw_window(self, it: _Item, kind: str, w: "_Window", label: str, html: str, L: float, R: float,
                     top: float, group: list, out_axes: list, roles: "_Roles") -> None:
        gid, node = it.id, it.node.id
        S = len(w.spatial_in)
        a = it.node.recipe.attrs
        st = a.get("stride")
        st = st[0] if isinstance(st, (list, tuple)) and len(set(st)) == 1 else st
        stride = "" if st in (None, 1) or isinstance(st, (list, tuple)) and set(st) == {1} else _fmt(st)
        t = "<SUP>T</SUP>" if "transpose" in it.node.op else ""
        sp_in = [group[x].wires[i].axis for x, i in w.spatial_in]
        sp_out = [out_axes[o][i] for o, i in w.spatial_out]
        wedge = Glyph(f"{gid}#wedge", f"{kind}-wedge", L, top - PITCH / 2 + 2, L + WEDGE,
                      top + (2 * S - 0.5) * PITCH - 2, label="★" + (f"/{stride}" if stride else ""),
                      html=f"<B>★</B>{t}" + (f"<SUB>{_esc(stride)}</SUB>" if stride else ""), node=node,
                      consumes=sp_in, produces=sp_out)
        self.d.glyphs.append(wedge)
        xk0, xk1 = L + WEDGE, L + WEDGE + INNER
        for i, (aid, kk) in enumerate(zip(sp_in, w.kernel)):        # one kernel wire per spatial axis
            y = top + (S + i) * PITCH
            name = self.ir.axes[aid].name if aid in self.ir.axes else "x"
            self.d.glyphs.append(Glyph(f"{gid}#k{i}", "kernel", xk0, y, xk1, y, label=f"k{_base(name)}={kk}",
                                       node=node, points=bezier([(xk0, y), (xk1, y)])))
        cons = [group[x].wires[i].axis for x, i in roles.consumed if (x, i) not in w.spatial_in]
        prod = [out_axes[o][i] for o, i in roles.produced if (o, i) not in w.spatial_out]
        y0 = top + (S - 0.5) * PITCH + 3
        y1 = top + (w.rows - 0.5) * PITCH - 3
        if kind == "conv":
            bias = any(p.name == "bias" for p in it.node.params)
            groups = a.get("groups", 1)
            sup = f"<SUP>g={groups}</SUP>" if isinstance(groups, int) and groups > 1 else ""
            g = Glyph(gid, "linear", xk1, y0, R, y1, label=("L+" if bias else "L") + (f" g={groups}" if sup else ""),
                      html="<B>L</B>" + ("<SUB>+</SUB>" if bias else "") + sup, node=node, learned=True,
                      consumes=cons, produces=prod)
        else:
            g = Glyph(gid, "reduce", xk1, y0, R, y1, label="Max" if "max" in it.node.op else "𝔼", node=node,
                      consumes=cons, produces=prod)
        g.badges = self._badges(it)
        self.d.glyphs.append(g)

    def _glyph_text(self, it: _Item, kind: str) -> tuple[str, str, bool, float]:
        """(plain label, HTML label, learned, width) of an item's glyph."""
        if it.kind == "block":
            inst = self.ir.meta.instances[it.path]
            name = it.path.rsplit(".", 1)[-1]
            lab = f"{inst.block}" + (f" ×{it.count}" if it.count > 1 else "")
            text = f"{name}: {lab}" if name and not name.isdigit() else lab
            return text, "", True, max(48.0, len(text) * 7.4 + 18)
        n = it.node
        od = O.get(n.op)
        a = n.recipe.attrs if n.recipe is not None else {}
        learned = any(p.kind == "param" for p in n.params) or bool(it.absorbed)
        local = _short(n.local or n.id)
        if kind == "linear":
            bias = any(p.name == "bias" for p in n.params)
            sup = local
            if it.absorbed:
                sup = _short(self.ir.node(next(iter(it.absorbed.values()))).local or local)
            html = f"<B>L</B>{'<SUB>+</SUB>' if bias else ''}<SUP>{_esc(sup)}</SUP>"
            return f"L{'+' if bias else ''} {sup}", html, True, max(40.0, 30 + len(sup) * 6.6)
        if kind == "conv":
            k = a.get("kernel")
            ks = "×".join(str(v) for v in k) if isinstance(k, (list, tuple)) and len(set(k)) > 1 else \
                str(k[0] if isinstance(k, (list, tuple)) else k)
            st = a.get("stride")
            s = st[0] if isinstance(st, (list, tuple)) and len(set(st)) == 1 else st
            extra = f"<SUB>/{_esc(_fmt(s))}</SUB>" if s not in (1, None, [1], (1,)) and s != [1, 1] else ""
            g = a.get("groups", 1)
            if isinstance(g, int) and g > 1:
                extra += f"<SUP>g={g}</SUP>"
            t = "T" if n.op.startswith("conv_transpose") or n.op == "convT" or "transpose" in n.op else ""
            html = f"<B>★{_esc(ks)}{('<SUP>T</SUP>' if t else '')}</B>{extra}"
            tail = (f"/{_fmt(s)}" if extra else "") + (f"g={g}" if isinstance(g, int) and g > 1 else "")
            return f"★{ks}", html, True, max(40.0, 30 + len(ks) * 8 + len(tail) * 5.5)
        if kind == "pool":
            k = a.get("kernel")
            ks = str(k[0] if isinstance(k, (list, tuple)) else k) if k is not None else ""
            op = "Max" if "max" in n.op else "𝔼"
            text = f"{op} ★{ks}"
            return text, _esc(text), False, max(40.0, len(text) * CHAR + 14)
        if kind == "softmax":
            return "", "", False, 22.0
        if kind == "norm":
            return od.glyph if od else n.op, "", learned, 26.0
        if kind == "marker":
            sym = _marker(n, od, a)
            return sym, "", False, max(24.0, len(sym) * CHAR + 8)
        if kind in ("join",):
            return (od.glyph if od else n.op), "", False, 18.0
        if kind in ("contract", "attention"):
            return "", "", False, 30.0 if kind == "contract" else 46.0
        if kind == "bar":
            return "", "", False, 8.0
        if kind == "cross":
            return "", "", False, 6.0
        text = od.glyph if od and od.glyph else n.op
        if kind == "index":
            text = n.op
        if learned and kind == "box":
            text = f"{text} {local}" if local and local != text else text
        return text, "", learned, max(30.0, len(text) * CHAR + 14)

    def _draw_glyph(self, it, kind, roles, label, html, learned, L, R, y0, y1, top, row_y, dots, group, out_axes,
                    slot, out_y) -> None:
        gid = it.id
        cons = [group[a].wires[k].axis for a, k in roles.consumed] + \
               [group[a].wires[k].axis for g in roles.caps for a, k in g]
        prod = [out_axes[o][k] for o, k in roles.produced]
        node = it.path if it.kind == "block" else it.node.id
        add = self.d.glyphs.append
        if kind == "marker":
            ys = [slot[s] for s in slot] or [top]
            add(Glyph(gid, "marker", L, min(ys) - 20, R, min(ys) - 8, label=label, node=node))
            return
        if kind == "cross":
            return
        if kind in ("join", "contract", "attention"):
            sym = {"add": "+", "sub": "−", "mul": "×", "div": "÷"}.get(it.node.op, label)
            for j, ((o, k), refs) in enumerate(roles.joins):
                x, yy = dots[(o, k)]
                cls = "add" if kind == "join" and it.node.op == "add" else "dot"
                add(Glyph(f"{gid}#{j}", cls, x - 3.5, yy - 3.5, x + 3.5, yy + 3.5, node=node,
                          label=sym if kind == "join" else "",
                          consumes=[group[a].wires[i].axis for a, i in refs], produces=[out_axes[o][k]]))
            for c, refs in enumerate(roles.caps):
                ysc = [row_y[r] for r in refs]
                x = L + 20 if kind == "attention" and c == len(roles.caps) - 1 else L
                bulge = 14 + 4 * (len(refs) - 2)
                pts = [(x, ysc[0]), (x + bulge, ysc[0]), (x + bulge, ysc[-1]), (x, ysc[-1])]
                add(Glyph(f"{gid}#cap{c}", "cap", x, min(ysc), x + bulge, max(ysc), node=node, points=pts,
                          consumes=[group[a].wires[i].axis for a, i in refs]))
            if kind == "attention" and roles.caps:
                # the softmax triangle on the key axis, before its cap with the values
                ysc = [row_y[r] for r in roles.caps[-1]]
                add(Glyph(f"{gid}#softmax", "softmax", L + 2, ysc[0] - 7, L + 16, ysc[0] + 7, node=node))
            if kind == "join" and roles.joins:
                x, yy = dots[roles.joins[0][0]]
                self.d.texts.append(Text(x + 8, yy - 9, sym, "ncd-symbol"))
            if (kind != "join" or not roles.joins) and (roles.consumed or roles.produced):   # anything else: a box
                ys = [row_y[r] for r in roles.consumed if r in row_y] + \
                     [out_y[p] for p in roles.produced]
                add(Glyph(f"{gid}#box", "box", L, min(ys) - 9, R, max(ys) + 9, label=label or it.node.op,
                          node=node, consumes=cons, produces=prod))
            return
        if kind == "softmax":
            add(Glyph(gid, "softmax", L + 2, top - 8, R - 2, top + 8, node=node, consumes=cons, produces=prod))
            return
        if kind == "norm":
            r = max(9.0, (y1 - y0) / 2)
            add(Glyph(gid, "norm", (L + R) / 2 - r, (y0 + y1) / 2 - r, (L + R) / 2 + r, (y0 + y1) / 2 + r,
                      label=label, node=node, learned=learned, consumes=cons, produces=prod))
            return
        if kind == "bar":
            add(Glyph(gid, "bar", L + 1, y0, R - 1, y1, node=node, consumes=cons, produces=prod))
            return
        g = Glyph(gid, kind, L, y0, R, y1, label=label, html=html, node=node, learned=learned, consumes=cons,
                  produces=prod)
        g.badges = self._badges(it)
        add(g)

    def _badges(self, it: _Item) -> list[str]:
        if not self.opt.annotate or it.kind != "node":
            return []
        out = []
        for name in self.opt.annotate:
            fn = BADGES.get(name)
            if fn is not None:
                b = fn(it.node)
                if b:
                    out.append(b)
        return out

    def finish(self) -> None:
        """Outputs run to the right edge, named."""
        end = self.R + max(MIN_GAP, max([len(w.label) for b in self.stack for w in b.wires] + [1]) * CHAR + 20)
        self.segment += 1
        y = TOP
        outs = {}
        for o in self.ir.meta.outputs:
            outs.setdefault(self.plan.resolve(_key(o.node, o.port)), []).append(o.name)
        for i, b in enumerate(self.stack):
            if i:
                y += SEP
            ys = []
            for w in b.wires:
                self._wire(w, b, [(w.sx, w.sy), (self.R, w.sy), (end - 10, y), (end, y)]
                           if w.sx < self.R - 0.5 else [(w.sx, w.sy), (end - 10, y), (end, y)], self.segment, "")
                ys.append(y)
                y += PITCH
            names = outs.get(b.tensor)
            if names and ys:
                self.d.texts.append(Text(end + 8, (ys[0] + ys[-1]) / 2, names.pop(0), "ncd-io-out"))
        self.d.width = end
        ymax = max([max(p[1] for p in w.points) for w in self.d.wires] + [g.y1 for g in self.d.glyphs] + [TOP])
        self.d.height = ymax + 20

    # -- fences
    def fences(self) -> None:
        insts = self.ir.meta.instances
        cols: dict[str, list[tuple[float, float]]] = {}
        for (L, R, _gid, scope) in self.d.columns:
            for p in self.ir.ancestors(scope):
                cols.setdefault(p, []).append((L, R))
        gl_by_col: dict[str, list[Glyph]] = {}
        col_of = {gid: scope for (_L, _R, gid, scope) in self.d.columns}
        for g in self.d.glyphs:
            base = g.id.split("#", 1)[0]
            scope = col_of.get(base)
            if scope is None:
                continue
            for p in self.ir.ancestors(scope):
                gl_by_col.setdefault(p, []).append(g)
        order = sorted(cols, key=lambda p: -len(self.ir.ancestors(p)))     # innermost first
        made: dict[str, Fence] = {}
        for p in order:
            xs = cols[p]
            gls = gl_by_col.get(p, [])
            kids = [made[c] for c in made if insts[c].parent == p or (insts[c].parent or "") == p]
            x0 = min([L for L, _R in xs] + [f.x0 + 6 for f in kids]) - 10
            x1 = max([R for _L, R in xs] + [f.x1 - 6 for f in kids]) + 10
            ys0 = [g.y0 for g in gls] + [f.y0 for f in kids]
            ys1 = [g.y1 for g in gls] + [f.y1 for f in kids]
            if not ys0:
                continue
            inst = insts[p]
            name = p.rsplit(".", 1)[-1]
            count = self.plan.count.get(p, 1)
            title = inst.block if (not name or name.isdigit()) else f"{name}: {inst.block}"
            if inst.frame is not None:       # run once per frame of the group and averaged
                title = f"𝔼 over frames of {inst.frame.group}: {title}"
            f = Fence(p, title, x0, min(ys0) - 26, x1, max(ys1) + 10, len(self.ir.ancestors(p)), count,
                      inst.parent)
            made[p] = f
        self.d.fences = sorted(made.values(), key=lambda f: (f.level, f.x0))
        for f in self.d.fences:
            if f.count > 1:
                self.d.texts.append(Text(f.x1 + 12, f.y0 + 4, f"×{f.count}", "ncd-count"))
        if self.d.fences:
            self.d.height = max(self.d.height, max(f.y1 for f in self.d.fences) + 16)


def _common_scope(scopes: list[str]) -> str:
    if not scopes:
        return ""
    parts = [s.split(".") if s else [] for s in scopes]
    out = []
    for xs in zip(*parts):
        if len(set(xs)) != 1:
            break
        out.append(xs[0])
    return ".".join(out)


def _short(name: str) -> str:
    return name if len(name) <= 18 else name[:17] + "…"


def _esc(s: str) -> str:
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _fmt(v) -> str:
    if isinstance(v, (list, tuple)):
        return "×".join(str(x) for x in v)
    return str(v)


_ACT = {"relu": "R", "gelu": "G", "gelu_tanh": "G", "silu": "S", "sigmoid": "σ", "tanh": "tanh", "softplus": "sp"}


def _marker(n, od, a) -> str:
    """The text of an elementwise marker: ➤R➤ for ReLU, ·0.5 for a scale, Drop for dropout."""
    op = n.op
    if op == "activation":
        fn = a.get("fn") or a.get("name") or "act"
        return f"➤{_ACT.get(fn, fn)}➤"
    if op in ("mul", "div", "add", "sub") and "scalar" in a:
        s = a["scalar"]
        sym = {"mul": "·", "div": "÷", "add": "+", "sub": "−"}[op]
        return f"{sym}{s:g}" if isinstance(s, float) else f"{sym}{s}"
    if "random" in (od.traits if od else ()):
        return "Drop"
    return f"➤{_ACT.get(op, op)}➤"


def _init_badge(node) -> str:
    for p in node.params:
        f = p.facets.get("init")
        if f is not None and getattr(f, "prim", ""):
            return f"init: {f.describe()}"
    return ""


def _sparsity_badge(node) -> str:
    st = node.facets.get("structure")
    if st is None:
        return ""
    from ..sparsity import describe_rule

    dense = 1
    for d in st.dense_shape:
        dense *= d
    kept = f"{st.nonzero / dense:.0%} kept" if st.nonzero < dense else f"1/{dense / st.stored:.3g} stored"
    return f"{describe_rule(st.rule, st.args)}, {kept}"


def _symmetry_badge(node) -> str:
    f = node.facets.get("symmetry")
    return f"sym: {getattr(f, 'group', f)}" if f is not None else ""


BADGE_CHAR = 4.4          # width of a badge character (8 pt) in points

# --annotate: one badge function per facet slot; the init, sparsity and symmetry passes fill the facets
BADGES = {"init": _init_badge, "sparsity": _sparsity_badge, "symmetry": _symmetry_badge}


def _box_at(x: float, y: float, label: str) -> tuple[float, float, float, float]:
    half = len(label) * CHAR / 2 + 1.5
    return (x - half, y - 5.0, x + half, y + 5.0)


def label_box(w: Wire) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) a wire's label takes: centred on its position, 10 pt high."""
    return _box_at(w.label_pos[0], w.label_pos[1], w.label)


def text_box(t: Text) -> tuple[float, float, float, float]:
    """The box of a free text: input names end at x, output names and counts start there, symbols centre."""
    w = len(t.text) * CHAR * (1.1 if t.cls.startswith("ncd-io") or t.cls == "ncd-count" else 0.9)
    x0 = t.x - w if t.cls == "ncd-io-in" else t.x if t.cls in ("ncd-io-out", "ncd-count") else t.x - w / 2
    return (x0, t.y - 6.0, x0 + w, t.y + 6.0)


def overlaps(d: Diagram) -> list[tuple[str, str]]:
    """Pairs of things a reader would see on top of each other: two wire labels whose boxes intersect
    (unless they say the same thing at the same place: one wire seen twice), or a label inside a glyph.
    The gallery is drawn with none; tests hold every example to it."""
    out: list[tuple[str, str]] = []
    glyphs, texts, labels = _Grid(), _Grid(), _Grid()
    for g in d.glyphs:
        if g.kind not in _THIN:
            glyphs.add((g.x0, g.y0, g.x1, g.y1), f"glyph {g.id}")
    for t in d.texts:
        texts.add(text_box(t), f"text {t.text}")
    for w in d.wires:
        if not w.label:
            continue
        a, me = label_box(w), f"{w.id}:{w.label}"
        for o in labels.owners(a, -2.0):          # labels may not touch either
            b = label_box(o)
            if not (o.axis == w.axis and abs(a[0] - b[0]) < 1 and abs(a[1] - b[1]) < 1):
                out.append((f"{o.id}:{o.label}", me))
        out += [(me, o) for o in glyphs.owners(a, 0.0) + texts.owners(a, -2.0)]
        labels.add(a, w)
    return out


def layout(ir: IR, options: Options | None = None) -> Diagram:
    """The circuit diagram of a checked IR (shapes and axes passes done)."""
    from ..compiler import _no_gc

    with _no_gc():          # thousands of small records and no cycles: the cyclic GC would rescan them
        return _Layout(ir, options or Options()).run()
