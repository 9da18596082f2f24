"""Axis identity: every axis of every tensor gets a stable identity and a display name.

The pass follows the axis signatures the shape rules left in each node's recipe (nndsl/recipe.py): a kept
axis is the same identity as its source (several sources that broadcast or are contracted against each
other become one identity), a merged axis is a new identity made of its parts, one factor of a split axis
is a new identity whose parent is the split one, a derived axis (a strided window, a slice, a
concatenation) is a new identity with its sources as parents, and a new axis (a linear layer's output
features) is a new identity named after the layer. A backend asks `ir.axes[node.axes[port][k]]` which wire
axis `k` of a tensor is, and where it comes from.

Names, best first: a dim the user declared (`B`, `T`, `D`, `heads`), a letter of a rearrange pattern or
an einsum equation, the layer that made the axis, a generated `name[i]`.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from ..dims import Dim, sym_name
from ..ir import IR
from ..recipe import DERIVE, KEEP, MERGE, NEW

DECLARED, LETTER, DERIVED, LAYER, GENERATED = 4, 3, 2, 1, 0


class AxisInfo(NamedTuple):
    id: int
    name: str
    size: Dim
    kind: str                # input, keep (never stored: kept axes share their source's id), merge, part,
    origin: str              # derive, new; origin is the node that made it
    parents: tuple = ()      # identities it is made from
    how: str = ""            # for derive: window, slice, concat, piece, resize, reduced, reshape


_tuple_new = tuple.__new__     # an AxisInfo from all its fields, without the named tuple's keyword __new__


class _Axes:
    def __init__(self) -> None:
        self.info: list[AxisInfo] = []
        self.rank: list[int] = []         # name priority
        self.up: list[int] = []           # union-find parent
        self.parts: dict[tuple, int] = {}
        self.joined = False                # whether any two identities were made one (union)

    def new(self, name: str, rank: int, size: Dim, kind: str, origin: str, parents=(), how="") -> int:
        i = len(self.info)
        self.info.append(_tuple_new(AxisInfo, (i, name, size, kind, origin, tuple(parents), how)))
        self.rank.append(rank)
        self.up.append(i)
        return i

    def find(self, i: int) -> int:
        root = i
        while self.up[root] != root:
            root = self.up[root]
        while self.up[i] != root:
            self.up[i], i = root, self.up[i]
        return root

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        keep, drop = (a, b) if (self.rank[a], -a) >= (self.rank[b], -b) else (b, a)
        self.up[drop] = keep
        self.joined = True
        return keep

    def offer(self, i: int, name: Optional[str], rank: int) -> None:
        """Name identity `i` `name` if that is a better name than the one it has."""
        i = self.find(i)
        if name and rank > self.rank[i]:
            self.info[i] = self.info[i]._replace(name=name)
            self.rank[i] = rank


def assign_axes(ir: IR) -> dict[int, AxisInfo]:
    """Fill `node.axes` for every node whose shapes are known; return the identities by id."""
    walk = AxesWalk(ir)
    for node in ir.nodes():
        walk.visit(node)
    return walk.finish()


class AxesWalk:
    """The pass node by node (`visit` each node after its producers and after its shapes are known;
    `finish` once), so that it can share one walk over the nodes with shape inference
    (compiler.node_walk)."""

    def __init__(self, ir: IR) -> None:
        self.ir = ir
        self.ax = _Axes()
        self.name_rank: dict[str, int] = {}   # a declared dim or a pattern letter (_declared), per name

    def visit(self, node) -> None:
        nd = node.__dict__            # the pass writes a computed field (hot loop: no re-validation)
        if not node.outputs:
            return
        ax = self.ax
        if node.op == "input" or node.recipe is None and node.op != "block_input":
            nd["axes"] = _all_fresh(ax, node)
            return
        ir = self.ir
        in_ids = []
        for u, p in ir.inputs_of(node.id):
            src = ir.node(u).axes
            in_ids.append(src[p] if p < len(src) else None)
        if None in in_ids:            # an upstream node failed: this one starts afresh
            nd["axes"] = _all_fresh(ax, node)
            return
        if node.op == "block_input":
            ids = tuple(in_ids[0][:node.outputs[0].rank])
            for i, name in zip(ids, node.outputs[0].axis_names()):
                if name:
                    ax.offer(i, name, DECLARED)
            nd["axes"] = [ids]
            return
        find, ranks, name_rank = ax.find, ax.rank, self.name_rank
        sig = node.recipe.sig
        outs = []
        for o, t in enumerate(node.outputs):
            rules = sig.outs[o] if sig is not None and o < len(sig.outs) else ()
            ids = []
            for k, d in enumerate(t.shape):
                rule = rules[k] if k < len(rules) else None
                if rule is not None and rule.kind is KEEP and len(rule.refs) == 1 and rule.name is None:
                    r = rule.refs[0]
                    if r.parts == 1:          # the common case: the same axis as the input's
                        ids.append(find(in_ids[r.arg][r.axis]))
                        continue
                ids.append(_one(ax, node, rule, in_ids, d, k))
            for i, rule, name in zip(ids, rules, t.axes):
                if name and rule.kind is KEEP:
                    rank = name_rank.get(name)
                    if rank is None:
                        rank = name_rank[name] = DECLARED if _declared(name) else LETTER
                    if rank > ranks[find(i)]:     # ax.offer, without the call where it would change nothing
                        ax.offer(i, name, rank)
            outs.append(tuple(ids))
        if sig is not None:
            for group in sig.contracted:
                refs = [in_ids[r.arg][r.axis] for r in group if r.parts == 1]
                for i in refs[1:]:
                    ax.union(refs[0], i)
        nd["axes"] = outs

    def finish(self) -> dict[int, AxisInfo]:
        """The identities by id. An identity that a later union joined to another is rewritten to its
        representative everywhere (without a union, every identity handed out is its own)."""
        ax = self.ax
        if ax.joined:
            find = ax.find
            for node in self.ir.nodes():
                node.__dict__["axes"] = [tuple(map(find, ids)) for ids in node.axes]
        return _names(ax)


def _declared(name: str) -> bool:
    return not name.islower() or len(name) > 1   # a one-letter lower-case name is a pattern letter


def _all_fresh(ax: _Axes, node) -> list[tuple[int, ...]]:
    """New identities for every axis of a node's outputs, named by declaration, dim or position."""
    out = []
    for t in node.outputs:
        ids = []
        for k, (d, name) in enumerate(zip(t.shape, t.axis_names())):
            rank = DECLARED
            if not name:
                sym = d.symbol_name()
                name, rank = (sym_name(sym), DECLARED) if sym else (f"{node.local or node.id}[{k}]", GENERATED)
            ids.append(ax.new(name, rank, d, "input" if node.op == "input" else NEW, node.id))
        out.append(tuple(ids))
    return out


def _ref(ax: _Axes, in_ids, r, name: Optional[str], d: Dim, node) -> int:
    i = ax.find(in_ids[r.arg][r.axis])
    if r.parts == 1:
        return i
    size = r.size if r.size is not None else d
    key = (i, r.part, r.parts, size)     # the size too: pixel_shuffle by 2 and by 1 split C in 3 differently
    if key not in ax.parts:
        ax.parts[key] = ax.new(name or f"{ax.info[i].name}.{r.part}", LETTER if name else DERIVED, size, "part",
                               node.id, (i,))
    return ax.parts[key]


def _one(ax: _Axes, node, rule, in_ids, d: Dim, k: int) -> int:
    if rule is None or rule.kind == NEW or not rule.refs:
        name = rule.name if rule is not None and rule.name else None
        if name:
            return ax.new(name, LETTER, d, NEW, node.id)
        if d == 1:
            return ax.new("1", GENERATED, d, NEW, node.id)
        return ax.new(node.local or node.id, LAYER, d, NEW, node.id)
    if rule.kind == KEEP:
        ids = [_ref(ax, in_ids, r, rule.name, d, node) for r in rule.refs]
        i = ids[0]
        for j in ids[1:]:
            i = ax.union(i, j)
        ax.offer(i, rule.name, LETTER)
        return ax.find(i)
    parents = tuple(_ref(ax, in_ids, r, None, d, node) for r in rule.refs)    # MERGE or DERIVE
    return ax.new(rule.name or "", LETTER if rule.name else DERIVED, d, rule.kind, node.id, parents, rule.how)


def _names(ax: _Axes) -> dict[int, AxisInfo]:
    """The identities by id, with representatives for parents. Merged and derived axes without a name of
    their own are named after their parents, once the parents have their best names."""
    done: dict[int, AxisInfo] = {}
    up = ax.up
    best = None         # made on first need (rare)
    for top in range(len(ax.info)):
        if up[top] != top or top in done:       # not a representative (a root is its own parent)
            continue
        a = ax.info[top]
        if a.name and not a.parents:       # most identities: named, made of nothing: as they are
            done[top] = a
            continue
        stack, entered = [top], {top}
        while stack:            # depth-first without recursion: chains of derived axes can be long
            i = stack[-1]
            a = ax.info[i]
            # an identity unified with its own source (a chunk into one piece) is not its own parent
            parents = tuple(q for q in (ax.find(p) for p in a.parents) if q != i)
            waiting = [p for p in parents if p not in done and p not in entered and not ax.info[p].name]
            if waiting and not a.name:
                stack.extend(waiting)
                entered.update(waiting)
                continue
            stack.pop()
            name = a.name
            if not name and parents:
                parts = [done[p].name if p in done else ax.info[p].name for p in parents]
                name = "(" + " ".join(parts) + ")" if a.kind == MERGE else \
                    parts[0] if len(set(parts)) == 1 else "+".join(parts)
            elif not name:     # it is its own source again: the best name among what was joined to it
                if best is None:
                    best = _best_member_names(ax)
                name = best.get(i, (0, ""))[1]
            done[i] = a._replace(name=name or "?", parents=parents)
    return done


def _best_member_names(ax: _Axes) -> dict[int, tuple[int, str]]:
    """Per representative, (rank, name) of the best-named identity joined to it."""
    best: dict[int, tuple[int, str]] = {}
    for j, info in enumerate(ax.info):
        if info.name:
            r = ax.find(j)
            if r not in best or ax.rank[j] > best[r][0]:
                best[r] = (ax.rank[j], info.name)
    return best


def verify_axes(ir: IR) -> list[str]:
    """What is wrong with the identities the pass left (empty when sound): every axis of every tensor has
    one, named, of the axis's size, and each is what its node's signature says: a kept axis is its
    source's, a factor of a split axis a part of it, a merged axis made of its parts (sizes multiplying
    out), a derived one made from its sources, the axes contracted together one wire. Used by the tests
    and the fuzzing oracle."""
    out: list[str] = []
    for n in ir.nodes():
        if len(n.axes) != len(n.outputs):
            out.append(f"{n.id}: {len(n.axes)} axis tuples for {len(n.outputs)} outputs")
            continue
        for ids, t in zip(n.axes, n.outputs):
            if len(ids) != t.rank:
                out.append(f"{n.id}: {len(ids)} identities for a {t.rank}-d tensor")
            for i, d in zip(ids, t.shape):
                info = ir.axes.get(i)
                if info is None or not info.name:
                    out.append(f"{n.id}: axis {i} has no named identity")
                elif info.size != d:
                    out.append(f"{n.id}: one wire, two sizes ({info.size} and {d})")
        if n.recipe is None or n.recipe.sig is None or out:
            continue
        ins = [ir.node(u).axes[p] for u, p in ir.inputs_of(n.id)]
        for ids, rules in zip(n.axes, n.recipe.sig.outs):
            for i, rule in zip(ids, rules):
                out += [f"{n.id}: {m}" for m in _follows(ir, n.id, ins, i, rule, ids.count(i) > 1)]
        for group in n.recipe.sig.contracted:
            if len({ins[r.arg][r.axis] for r in group}) != 1:
                out.append(f"{n.id}: contracted axes are not one wire")
    return out


def _follows(ir: IR, nid: str, ins: list, i: int, rule, twin: bool = False) -> list[str]:
    info = ir.axes[i]
    if rule.kind == KEEP and rule.refs and all(r.parts == 1 for r in rule.refs):
        return [] if all(ins[r.arg][r.axis] == i for r in rule.refs) else ["a kept axis changed identity"]
    # a derived identity may be joined later to another one (the heads split out of q and out of k meet in
    # attention): its record then shows one of the two origins
    if rule.kind == KEEP:                  # one factor of a split axis
        if info.origin != nid or info.kind == "part" and not info.parents:
            return []    # joined to an identity made elsewhere, or to its own source (a factor of the whole size)
        parent = ir.axes[info.parents[0]].size if info.kind == "part" and len(info.parents) == 1 else None
        if parent is None:
            return ["a factor of a split axis is not a part of it"]
        if parent.is_const and info.size.is_const and parent.value % info.size.value:
            return [f"a part of size {info.size} of an axis of size {parent}"]
        return []
    if rule.kind in (MERGE, DERIVE) and info.origin != nid:
        return []    # joined later to an identity made elsewhere, whose record it shows
    if rule.kind == MERGE:
        if info.kind != MERGE or len(info.parents) > len(rule.refs):
            return ["a merged axis is not made of its parts"]
        if len(info.parents) < len(rule.refs):
            return []    # a part joined to the merge itself (factors of size 1) is not its own parent
        sizes = [ir.axes[p].size for p in info.parents]
        if all(d.is_const for d in sizes) and info.size.is_const:
            k = 1
            for d in sizes:
                k *= d.value
            if k != info.size.value:
                return [f"parts of sizes {[str(d) for d in sizes]} merged into {info.size}"]
        return []
    if rule.kind == DERIVE and not info.parents:       # joined with its own source: one wire again
        ok = twin or all(ins[r.arg][r.axis] == i for r in rule.refs)     # (or a twin's record: see below)
        return [] if ok and info.name != "?" else ["a derived axis lost its sources"]
    if rule.kind == DERIVE and (info.kind != DERIVE or info.how != rule.how):
        return [f"a derived ({rule.how}) axis is recorded as {info.kind} ({info.how})"]
    # its sources, less itself where a broadcast joined it to one of them later (`reshape` of [4, B] to
    # [1, -1, 4] met by [B, 4]: the last axis is its own source's wire); joined to another axis of the same
    # tensor (two pooled axes of size 1 contracted by a matmul), the record is that axis's
    if rule.kind == DERIVE and not twin and set(info.parents) != {ins[r.arg][r.axis] for r in rule.refs} - {i}:
        return [f"a derived ({rule.how}) axis is not made from its sources"]
    return []    # a new axis has nothing to follow: a later broadcast may join it to another
