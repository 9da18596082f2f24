"""The IR: a networkx MultiDiGraph whose node and edge attributes are pydantic models.

Node ids are hierarchical names (`layer1.0.conv1`); the insertion order of nodes is a topological
order (elaboration creates a node after its inputs), which passes and backends rely on. Edges are
keyed by the consumer's input port and carry the tensor type once shape inference has run.
"""
from __future__ import annotations

import json
from typing import Any, Optional

import networkx as nx
from pydantic import BaseModel, ConfigDict

from .diagnostics import Span
from .dims import Dim, parse_dim
from .fastmodel import from_fields, make
from .recipe import ParamSpec, Recipe
from .syntax import ast as A
from .types import TensorType


class Node(BaseModel):
    model_config = ConfigDict(defer_build=True, arbitrary_types_allowed=True)

    id: str                            # hierarchical name, unique in the graph
    op: str
    attrs: dict[str, Any] = {}
    scope: str = ""                    # path of the enclosing block instance ("" for the model)
    local: str = ""                    # name relative to the scope
    span: Span
    arg_spans: list[Optional[Span]] = []
    attr_spans: Optional[dict[str, Span]] = None   # where string attributes (patterns, equations) are written
    binding: Optional[str] = None      # the user binding this node was created for
    tie: Optional[str] = None          # node id whose same-named parameters this node shares
    outputs: list[TensorType] = []     # filled by shape inference
    params: list[ParamSpec] = []       # filled by shape inference
    flops: Any = None                  # Dim: FLOPs of one forward, filled by shape inference
    recipe: Optional[Recipe] = None    # resolved attributes and axis signature, filled by shape inference
    axes: list[tuple[int, ...]] = []   # per output, the identity of each axis (IR.axes), filled by the axes pass
    facets: dict[str, Any] = {}        # slot -> facet (nndsl/facets), filled by the passes that compute them


class EdgeAttr(BaseModel):
    model_config = ConfigDict(defer_build=True)

    src_port: int = 0
    dst_port: int = 0
    type: Optional[TensorType] = None
    facets: dict[str, Any] = {}        # slot -> facet (nndsl/facets)


class FrameAverage(BaseModel):
    """`frame_average(Block(x), group=G)`: the instance runs once per frame of the factors `factors` of G
    (a finite group's elements, or the PCA frames of point coordinates) and averages; its outputs keep
    the action, with `out_roles` (per output, per axis) the role each axis carries."""

    model_config = ConfigDict(defer_build=True)

    group: str
    factors: list[int]
    kind: str                          # the averaged factor's kind (c4, d4, cyclic, dihedral, o3, so3, e3)
    equivariant: bool = False          # outputs acted on as the inputs are (else invariant)
    span: Span
    elements: list = []                # `matrices(...)`: every element of the group, averaged over
    inputs: list[list[str]]            # per block input, the role of each axis ("row", "col", "vec", "perm", "")
    out_roles: list[list[str]]


class Instance(BaseModel):
    """One instantiation of a block: the unit the PyTorch backend turns into a module."""

    model_config = ConfigDict(defer_build=True)

    path: str
    block: str
    file: str
    params: dict[str, Any] = {}
    parent: Optional[str] = None
    inputs: list[str] = []             # block_input node ids, in declaration order
    outputs: list[tuple[str, int]] = []
    output_names: list[str] = []
    span: Span
    frame: Optional[FrameAverage] = None   # frame averaging of the whole instance


class EnsureCheck(BaseModel):
    """An `ensure` that needs shapes or parameter counts; evaluated after shape inference."""

    model_config = ConfigDict(defer_build=True)

    expr: A.Expr
    env: dict[str, Any]
    scope: str
    span: Span


class InitDecl(BaseModel):
    """An init rule as declared: for the layers one statement created (`nodes`), or for every layer in
    an instance and below it (`nodes` is None). The init pass picks, per parameter, the most specific."""

    model_config = ConfigDict(defer_build=True)

    op: Optional[str] = None           # op kind the key names (None: any)
    param: Optional[str] = None        # parameter name the key names (None: any)
    rule: A.Expr
    env: dict[str, Any]                # the names the rule uses from its scope (block parameters), encoded
    scope: str
    span: Span                         # the whole `key: rule` entry
    key_span: Span
    nodes: Optional[list[str]] = None  # one list shared by the entries of a clause
    group: int = -1                    # the clause a statement-level rule belongs to (-1: block-level)
    order: int = 0


class ParametrizationDecl(BaseModel):
    """`parametrization NAME(args)` of the model (resolved by passes/parametrize.py)."""

    model_config = ConfigDict(defer_build=True)

    name: str                          # sp, ntk, mf, mup
    args: dict[str, Any] = {}
    span: Span


class ModelInput(BaseModel):
    model_config = ConfigDict(defer_build=True)

    name: str
    node: str
    type: TensorType


class GroupAction(BaseModel):
    """`input x: [B, N, D] acted by S` with `group S = perm(N)`: factor `factor` of S (nndsl/symmetry/groups.py)
    acts on axis `axis` of input `node`, in the role `role`: "perm" (a permuted set axis), "row" and "col"
    (the two axes of a rotated grid), "vec" (coordinates a matrix acts on)."""

    model_config = ConfigDict(defer_build=True)

    group: str
    kind: str                          # the factor's kind: perm, cyclic, dihedral, c4, d4, o3, so3, e3
    node: str
    axis: int
    dim: str
    span: Span
    factor: int = 0
    role: str = "perm"
    gens: list = []                    # `matrices(D, ...)`: the generators (rows of floats)


class SymmetryClaim(BaseModel):
    """`ensure y invariant under S` (or equivariant): checked by passes/equivariance.py."""

    model_config = ConfigDict(defer_build=True)

    claim: str                         # "invariant" or "equivariant"
    group: str
    node: str
    port: int = 0
    tensor: str                        # the name in the spec
    span: Span
    scope: str = ""
    # filled by the equivariance pass: "proved", "refuted" or "unknown", and per factor of the group the
    # role of each axis of the claimed tensor ("" where the factor does not act; "regular": a group axis)
    verdict: str = ""
    roles: dict[int, list[str]] = {}


class ModelOutput(BaseModel):
    model_config = ConfigDict(defer_build=True)

    name: str
    node: str
    port: int = 0


class GraphMeta(BaseModel):
    model_config = ConfigDict(defer_build=True)

    model: str
    file: str
    inputs: list[ModelInput] = []
    outputs: list[ModelOutput] = []
    instances: dict[str, Instance] = {}
    ensures: list[EnsureCheck] = []
    facts: list[tuple[str, str]] = []  # divisibility facts (num, den) as dim strings
    free_dims: list[str] = []
    dim_bounds: dict[str, list] = {}   # free dim -> [min, max] (inclusive; max None: unbounded) from `ensure`s
    constants: list[str] = []          # nodes known when the module is built (what buffers are made of)
    inits: list[InitDecl] = []         # init rules as declared (resolved per parameter by passes/init.py)
    sparsity: list[InitDecl] = []      # storage rules as declared (resolved by passes/sparsity.py)
    actions: list[GroupAction] = []    # groups acting on the inputs
    claims: list[SymmetryClaim] = []   # `ensure ... invariant|equivariant under G`
    frames: list[str] = []             # instances that `frame_average` runs (Instance.frame)
    parametrization: Optional[ParametrizationDecl] = None
    acts: dict[str, Any] = {}          # `act` definitions visible in the model's file: name -> expression tree


def _clear_cache(g) -> None:
    """Drop what networkx cached about the graph (it caches only after an algorithm asked for it)."""
    cache = g.__dict__.get("__networkx_cache__")
    if cache:
        cache.clear()


class IR:
    """The elaborated model."""

    def __init__(self, meta: GraphMeta):
        self.g = nx.MultiDiGraph()
        self.meta = meta
        self.axes: dict = {}            # axis identity -> passes.axes.AxisInfo, filled by the axes pass
        self.order: list[str] = []      # node ids in the order elaboration created them
        self.signal = None              # passes.signal.Report, when the signal pass ran
        self.topology = None            # passes.topology.Topology, when a pass needed it
        # whether every edge add_edge made ran from an earlier node into the newest one: then creation
        # order is topological by construction (validation reports an IR where it is not)
        self.forward = True

    # -- construction
    # Elaboration adds one node and its edges per op, tens of thousands for a large spec: these write the
    # graph's adjacency as networkx's own add_node / add_edge do (a node's successor, predecessor and
    # attribute dicts; one key dict shared by both directions of a pair), without their per-call checks.
    # Nodes and edges come only from here; tests compare the result with a graph networkx built.
    # An edge goes into the node made last, from one made before it: what keeps creation order
    # topological, checked here for one comparison per edge.
    def add_node(self, node: Node) -> Node:
        g, nid = self.g, node.id
        if nid in g._succ:
            g._node[nid]["node"] = node
        else:
            g._succ[nid] = {}
            g._pred[nid] = {}
            g._node[nid] = {"node": node}
            self.order.append(nid)
        _clear_cache(g)
        return node

    def add_edge(self, src: str, src_port: int, dst: str, dst_port: int) -> None:
        """An edge from `src`'s output `src_port` into `dst`'s input `dst_port` (both nodes exist)."""
        g = self.g
        if dst != self.order[-1] or src == dst:
            self.forward = False
        keys = g._succ[src].get(dst)
        if keys is None:
            keys = g._succ[src][dst] = g._pred[dst][src] = {}
        keys[dst_port] = {"attr": from_fields(EdgeAttr, {"src_port": src_port, "dst_port": dst_port, "type": None,
                                                         "facets": {}})}
        _clear_cache(g)

    # -- queries
    def node(self, nid: str) -> Node:
        return self.g._node[nid]["node"]     # networkx's node dict: the views cost a call per lookup

    def nodes(self) -> list[Node]:
        return [d["node"] for d in self.g._node.values()]

    def inputs_of(self, nid: str) -> list[tuple[str, int]]:
        """(producer, port) of each input, in port order."""
        pred = self.g._pred[nid]
        if len(pred) == 1:                   # one producer, one edge: the common case, no sort
            (u, kd), = pred.items()
            if len(kd) == 1:
                (d,) = kd.values()
                return [(u, d["attr"].src_port)]
        items = [(k, u, d["attr"].src_port) for u, kd in pred.items() for k, d in kd.items()]
        if len(items) > 1:
            items.sort()
        return [(u, p) for _k, u, p in items]

    def in_types(self, nid: str) -> list[TensorType | None]:
        nodes, out = self.g._node, []
        for u, p in self.inputs_of(nid):
            outs = nodes[u]["node"].outputs
            out.append(outs[p] if p < len(outs) else None)
        return out

    def edges(self):
        """(producer, consumer, key, EdgeAttr) of every edge, in networkx's order. Read from the adjacency:
        networkx's `g.edges` view caches itself on the graph, a reference cycle that keeps the whole IR
        alive until the cyclic GC runs (and the front end runs with it off)."""
        for u, nbrs in self.g._succ.items():
            for v, keys in nbrs.items():
                for k, d in keys.items():
                    yield u, v, k, d["attr"]

    def __len__(self) -> int:
        return self.g.number_of_nodes()

    def ancestors(self, path: str) -> list[str]:
        """The block instance at `path` and the instances enclosing it, innermost first ("" is the model)."""
        out = []
        while path and path in self.meta.instances and len(out) < 1000:
            out.append(path)
            path = self.meta.instances[path].parent or ""
        return out

    def call_sites(self, path: str) -> list:
        """The calls that led to the block instance at `path`, innermost first (empty for the model)."""
        from .diagnostics.model import CallSite

        insts = self.meta.instances
        return [CallSite(block=insts[p].block, span=insts[p].span) for p in self.ancestors(path)]

    # -- serialisation
    def to_json(self) -> str:
        return json.dumps({
            "meta": self.meta.model_dump(mode="json"),
            "nodes": [_enc(n.model_dump(mode="python")) for n in self.nodes()],
            "edges": [{"src": u, "dst": v, **a.model_dump(mode="json")}
                      for u, v, _k, a in self.edges()],
            "axes": [{"id": a.id, "name": a.name, "size": str(a.size), "kind": a.kind, "origin": a.origin,
                      "parents": list(a.parents), "how": a.how} for a in self.axes.values()],
        }, sort_keys=False)

    @staticmethod
    def from_json(text: str) -> "IR":
        data = json.loads(text)
        ir = IR(GraphMeta.model_validate(data["meta"]))
        from . import facets
        from .recipe import Face, signature_from_data

        for nd in data["nodes"]:
            node = Node.model_validate(_dec(nd))
            node.facets = facets.load(node.facets)
            for p in node.params:
                p.faces = tuple(Face(*f) for f in p.faces)
                p.facets = facets.load(p.facets)
            if node.recipe is not None:
                node.recipe.sig = signature_from_data(node.recipe.sig)
                node.recipe.fan = tuple(node.recipe.fan)
            ir.add_node(node)
        for e in data["edges"]:
            attr = EdgeAttr.model_validate({k: e[k] for k in ("src_port", "dst_port", "type")})
            attr.facets = facets.load(e.get("facets", {}))
            ir.g.add_edge(e["src"], e["dst"], key=e["dst_port"], attr=attr)
        from .passes.axes import AxisInfo

        for a in data.get("axes", []):
            ir.axes[a["id"]] = AxisInfo(a["id"], a["name"], parse_dim(a["size"]), a["kind"], a["origin"],
                                        tuple(a["parents"]), a["how"])
        for n in ir.nodes():
            n.axes = [tuple(ids) for ids in n.axes]
        return ir


def _enc(v):
    if isinstance(v, Dim):
        return {"$dim": str(v)}
    if isinstance(v, dict):
        return {k: _enc(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_enc(x) for x in v]
    if isinstance(v, BaseModel):
        return _enc(v.model_dump(mode="python"))
    return v


def _dec(v):
    if isinstance(v, dict):
        if set(v) == {"$dim"}:
            return parse_dim(v["$dim"])
        return {k: _dec(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_dec(x) for x in v]
    return v
