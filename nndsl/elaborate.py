"""AST -> IR. Instantiates blocks, binds parameters, unrolls `repeat`, selects `if` branches and
builds the networkx graph. Shapes are not computed here (see passes/shapes.py): a block's input
dims are fresh symbols (`H@layer1.0`) that shape inference binds by unification."""
from __future__ import annotations

import difflib
import math
import re
import weakref
from dataclasses import dataclass
from typing import Any

from . import ops as O
from .diagnostics import Abort, Diagnostic, Label, Sink, Span
from .dims import Dim, Facts, scoped, sym_name
from .ir import IR, EnsureCheck, GraphMeta, GroupAction, InitDecl, Instance, ModelInput, Node, SymmetryClaim
from .expansion import Estimator
from .fastmodel import from_fields, make
from .limits import DEFAULT, Limits
from .loader import Program
from .syntax import ast as A
from .types import DTYPES, TensorType
from .evaluate import (REQUIRED, BUILTINS, POISON, Slot, Slots, bind_call, Binding, Deferred, Evaluator, Nested, Reported, Scope, Undecidable, _sub,
                       explain)
from .values import TensorVal, TupleVal, describe, encode

MAX_DIM = 2 ** 40
_MODULEDICT_ATTRS = {"clear", "items", "keys", "pop", "update", "values"}
PARAM_TYPES = {"int", "float", "bool", "str", "dims"}


class Elaborator:
    def __init__(self, prog: Program, sink: Sink, limits: Limits = DEFAULT):
        self.prog = prog
        self.sink = sink
        self.limits = limits
        self._block_cost: dict[tuple, int] = {}   # (block, params) -> nodes its body created
        self._kw_spans: dict[str, Span] = {}      # keyword -> where it is written, in the latest call
        self._slots: dict[str, tuple] = {}       # op -> its attributes as call slots (_op_slots)
        self._bound: dict[tuple, dict] = {}      # attribute values as given -> as bound and checked (_op_call)
        self.ir: IR | None = None
        self.facts = Facts()
        self.used_ids: set[str] = set()
        self.stack: list[str] = []
        self._axis_names = False   # while evaluating an `axes=` argument, unknown names are axis names
        # the evaluator calls back into this elaborator through a weak proxy: the pair is freed by reference
        # counting when the check is done (it runs with the cyclic GC off, see compiler._no_gc)
        self.evaluator = Evaluator(weakref.proxy(self), limits, self.facts)
        self.ev = self.evaluator.ev
        self._cond = self.evaluator.cond

    # -- the evaluator's host: what expressions do to the graph ---------------------------------------
    def tensor_op(self, op, tensors, attrs, name, scope, span, arg_spans):
        return self._make_node(op, tensors, attrs, name, scope, span, arg_spans)

    def call(self, e: A.Call, scope: Scope, name, ensure: bool):
        return self._call(e, scope, name, [], ensure)

    def pipe(self, e: A.Pipe, scope: Scope, name):
        return self._pipe(e, scope, name)

    def shape_of(self, v: TensorVal):
        raise Deferred()           # shapes are inferred after elaboration: the `ensure` waits for them

    def missing(self, e: A.Name, scope: Scope, ensure: bool):
        if e.id == "params" and ensure:
            raise Deferred()
        if self._axis_names:
            return e.id
        cands = [n for n in scope.all_names()]
        sug = difflib.get_close_matches(e.id, cands, n=1)
        help_ = f"did you mean `{sug[0]}`?" if sug else None
        if O.get(e.id) is not None or e.id in scope.blocks:
            help_ = f"`{e.id}` is an operation: call it, `{e.id}(...)`, or use it as a stage, `x |> {e.id}`"
        self.fail("E0101", f"unknown name `{e.id}`", e.span, label="not found in this scope", help=help_)

    # ------------------------------------------------------------------------------------------
    def fail(self, code: str, message: str, span: Span | None, **kw):
        raise Abort(Diagnostic(code=code, message=message, span=span, **kw))

    def build(self, model: A.BlockDef, overrides: dict[str, Any]) -> IR:
        self.ir = IR(make(GraphMeta, model=model.name, file=model.span.file))
        self.sink.chain_for = self.ir.call_sites
        scope = Scope(path="", file=model.span.file, blocks=self.prog.scopes.get(model.span.file, self.prog.blocks))
        params = self._bind_params(model, [], {}, model.name_span, overrides=overrides)
        inst = make(Instance, path="", block=model.name, file=model.span.file, params=encode(params), span=model.span)
        self.ir.meta.instances[""] = inst
        self._check_expansion(model, scope)
        self.stack.append(model.name)
        self._body(model, scope, params, inputs=None, inst=inst)
        self.ir.meta.facts = [(str(a), str(b)) for a, b in self.facts.pairs]
        for name, ad in scope.blocks.items():        # the acts init rules may name, at their defaults
            if isinstance(ad, A.ActDef) and "." not in name and all(p.default is not None for p in ad.params):
                try:
                    self.ir.meta.acts[name] = self._act_tree(ad, ad.span, [], {}, ["x"], [])
                except Abort as a:
                    self.sink.add(a.diagnostic)
        return self.ir

    # -- acts -------------------------------------------------------------------------------------
    def _act_tree(self, ad: A.ActDef, span: Span, pos: list, kw: dict, arg_tree: list, stack: list[str]) -> list:
        """An `act` definition as the expression tree of nndsl/ops/userfn.py, its parameters bound from
        the call's numbers (pos/kw: (value, span)) or their defaults, the acts it calls inlined."""
        from .ops.userfn import MAX_NODES, size

        if ad.name in stack:
            self.fail("E0116", f"act `{ad.name}` calls itself", span, help="an act may call only earlier acts")
        if not stack:
            self._act_budget = [MAX_NODES]
        if len(pos) > len(ad.params):
            self.fail("E0104", f"`{ad.name}` takes {len(ad.params)} number{'s' if len(ad.params) != 1 else ''} after "
                      f"its tensor, got {len(pos)}", span)
        values: dict[str, float] = {}
        for i, p in enumerate(ad.params):
            if i < len(pos):
                v, sp = pos[i]
            elif p.name in kw:
                v, sp = kw.pop(p.name)
            elif p.default is not None:
                v, sp = self._act_const(p.default, ad), p.default.span
            else:
                self.fail("E0107", f"`{ad.name}` needs `{p.name}`", span)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                self.fail("E0119", f"`{p.name}` of `{ad.name}` must be a finite number, got {describe(v)}", sp)
            values[p.name] = float(v)
        for k, (_v, sp) in kw.items():
            self.fail("E0103", f"`{ad.name}` has no parameter `{k}`", sp,
                      help=f"its parameters: {', '.join(p.name for p in ad.params) or 'none'}")
        blocks = self.prog.scopes.get(ad.span.file, {})

        tree = self._act_term((ad, span, values, arg_tree, blocks, stack), ad.body)
        if size(tree) > MAX_NODES:
            self.fail("E0112", f"act `{ad.name}` expands to more than {MAX_NODES} terms", span)
        return tree

    def _act_term(self, t: tuple, e) -> list:
        """One term of an act's body as an expression tree (`t`: the act, the call's span, its parameters' values,
        the argument's tree, the blocks in its file, the acts being expanded). A method, not a closure that calls
        itself: that is a reference cycle, which would keep the elaborator and its graph alive until the cyclic
        GC runs (the front end runs with it off)."""
        from .ops.userfn import FUNCS, MAX_NODES

        ad, span, values, arg_tree, blocks, stack = t
        self._act_budget[0] -= 1
        if self._act_budget[0] < 0:
            self.fail("E0112", f"act `{ad.name}` expands to more than {MAX_NODES} terms", span)
        if isinstance(e, A.Name):
            if e.id == ad.arg:
                return arg_tree
            if e.id in values:
                return ["n", values[e.id]]
            self.fail("E0101", f"unknown name `{e.id}` in act `{ad.name}`", e.span, label="not found",
                      help=f"an act uses its argument `{ad.arg}`, its parameters and numbers")
        if isinstance(e, A.Num):
            if not math.isfinite(e.value):
                self.fail("E0119", "a number in an act must be finite", e.span)
            return ["n", float(e.value)]
        if isinstance(e, A.Neg):
            return ["neg", self._act_term(t, e.value)]
        if isinstance(e, A.BinOp) and e.op in ("+", "-", "*", "/"):
            return ["b", e.op, self._act_term(t, e.left), self._act_term(t, e.right)]
        if isinstance(e, A.Call) and isinstance(e.func, A.Name):
            f = e.func.id
            tensor = [a for a in e.args if a.name is None]
            if f in FUNCS:
                if len(e.args) != 1 or tensor != e.args:
                    self.fail("E0119", f"`{f}` in an act takes one argument", e.span)
                return ["f", f, self._act_term(t, e.args[0].value)]
            other = blocks.get(f)
            if isinstance(other, A.ActDef):
                if not tensor:
                    self.fail("E0119", f"`{f}` needs its tensor argument first", e.span)
                cpos = [(self._act_const(a.value, ad, values), a.value.span) for a in tensor[1:]]
                ckw = {a.name: (self._act_const(a.value, ad, values), a.value.span) for a in e.args if a.name}
                return self._act_tree(other, e.span, cpos, ckw, self._act_term(t, tensor[0].value), stack + [ad.name])
            self.fail("E0119", f"`{f}` cannot be used in an act", e.func.span, label="not a function of one number",
                      help="an act may call exp, log, sqrt, abs, sin, cos, erf, the activations "
                           "(relu, gelu, tanh, sigmoid, silu, ...) and earlier acts")
        self.fail("E0119", f"this cannot be part of act `{ad.name}`", e.span, label="not elementwise arithmetic",
                  help="an act is built from its argument, numbers, + - * / and functions of one argument")

    def _act_const(self, e, ad: A.ActDef, values: dict | None = None) -> float:
        """A parameter's default, or a number an act passes to another: a constant expression."""
        if isinstance(e, A.Num):
            return e.value
        if isinstance(e, A.Neg) and isinstance(e.value, A.Num):
            return -e.value.value
        if isinstance(e, A.Name) and values and e.id in values:
            return values[e.id]
        self.fail("E0119", f"a parameter of act `{ad.name}` is a number here", e.span)

    def _check_expansion(self, model: A.BlockDef, scope: Scope) -> None:
        """Refuse, before unrolling anything, a model whose expansion is known to exceed the node limit."""
        limit = self.limits.nodes
        est = Estimator(self.prog.scopes, scope.blocks, cap=limit * 4 + 1)
        total = 0
        for st in model.body:
            c = est.stmt(st, scope.blocks)
            total += c
            if total > limit:
                self.fail("E0112", f"the model expands to more than {limit:,} nodes", st.span,
                          label=(f"this statement alone expands to at least {c:,} nodes" if c < est.cap else
                                 f"this statement alone expands to more than {est.cap - 1:,} nodes") if c > limit
                          else "the limit is passed here",
                          notes=[f"counted before unrolling: {total:,} nodes or more so far"],
                          help="raise the limit with --max-nodes (limits= in the API) if the model is meant to "
                               "be this large")

    def _room(self, span: Span | None, n: int = 1) -> None:
        if len(self.ir.order) + n > self.limits.nodes:
            self.fail("E0112", f"the model has more than {self.limits.nodes:,} nodes", span,
                      label="the node limit is reached while building this",
                      help="raise the limit with --max-nodes (limits= in the API)")

    # -- parameters -----------------------------------------------------------------------------
    def _bind_params(self, bd: A.BlockDef, pos: list[tuple[Any, Span]], kw: dict[str, tuple[Any, Span]],
                     call_span: Span, overrides: dict | None = None) -> dict[str, Any]:
        names = [p.name for p in bd.params]
        seen: set[str] = set()
        for p in bd.params:
            if p.name in seen:
                self.sink.error("E0105", f"parameter `{p.name}` is declared twice", p.span)
            seen.add(p.name)
            if p.type not in PARAM_TYPES:
                self.fail("E0106", f"unknown parameter type `{p.type}`", p.type_span,
                          help=f"parameter types are {', '.join(sorted(PARAM_TYPES))}")
        def too_many(n):
            self.fail("E0104", f"`{bd.name}` takes {n} parameter{'s' if n != 1 else ''} but {len(pos)} were "
                      f"given", pos[n][1], secondary=[Label(span=bd.name_span, message=f"`{bd.name}` is defined here")])

        def missing(slot):
            p = next(p for p in bd.params if p.name == slot.name)
            self.fail("E0107", f"`{bd.name}` needs a value for parameter `{p.name}: {p.type}`", call_span,
                      secondary=[Label(span=p.span, message="declared here without a default")])

        def default(p):
            def value(bound):      # defaults may refer to earlier parameters
                sc = Scope(path="", file=bd.span.file)
                for k, v in bound.items():
                    sc.names[k] = Binding(v, p.span, "param", True)
                return self._coerce_param(self.ev(p.default, sc, None), p, p.default.span)
            return value

        slots = [Slot(p.name, lambda v, sp, p=p: self._coerce_param(v, p, sp),
                      REQUIRED if p.default is None else default(p)) for p in bd.params]
        return bind_call(bd.name, slots, pos, kw, call_span, fail=self.fail, too_many=too_many, missing=missing,
                         unknown=lambda k, sp: self._unknown_kw(k, names, sp, bd.name), overrides=overrides,
                         noun="parameter ")

    def _unknown_kw(self, k: str, valid: list[str], span: Span, what: str):
        key = self._kw_spans.get(k)
        if key is not None and key.file == span.file:
            span = key  # the caret goes under the misspelled keyword, not its value
        sug = difflib.get_close_matches(k, valid, n=1)
        self.fail("E0103", f"`{what}` has no parameter or attribute `{k}`", span,
                  label="unknown keyword", help=f"did you mean `{sug[0]}`?" if sug else None,
                  notes=[f"valid keywords: {', '.join(valid) if valid else 'none'}"])

    def _coerce_param(self, v, p: A.Param, span: Span):
        t = p.type
        if t == "int":
            if isinstance(v, Dim):
                return v.value if v.is_const else v
            if isinstance(v, int) and not isinstance(v, bool):
                return v
            if isinstance(v, float) and v.is_integer():
                return int(v)
        elif t == "float":
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
            if isinstance(v, Dim) and v.is_const:
                return float(v.value)
        elif t == "bool" and isinstance(v, bool):
            return v
        elif t == "str" and isinstance(v, str):
            return v
        elif t == "dims" and isinstance(v, list) and all(isinstance(x, (int, Dim)) and not isinstance(x, bool) for x in v):
            return [x.value if isinstance(x, Dim) and x.is_const else x for x in v]
        self.fail("E0106", f"parameter `{p.name}` expects {t}, got {describe(v)}", span,
                  label=f"this is {describe(v)}")

    # -- bodies -----------------------------------------------------------------------------------
    def _body(self, bd: A.BlockDef, scope: Scope, params: dict, inputs: list[tuple[TensorVal, Span]] | None,
              inst: Instance):
        assert self.ir is not None
        for k, v in params.items():
            p = next(pp for pp in bd.params if pp.name == k)
            scope.names[k] = Binding(v, p.span, "param", True)
        input_stmts = [s for s in bd.body if isinstance(s, A.Input)]
        if inputs is not None and len(inputs) != len(input_stmts):
            raise AssertionError("arity checked by caller")
        self._input_i = 0
        ctx = _Ctx(bd=bd, scope=scope, inst=inst, inputs=inputs, outputs=[])
        failed = False
        for st in bd.body:
            try:
                self._stmt(st, ctx)
            except RecursionError:
                failed = True
                self.sink.add(Diagnostic(code="E0112", message="this statement is nested too deeply to evaluate",
                                        span=st.span, help="split it into several bindings"), scope.path)
                continue
            except (Abort, Reported) as e:
                failed = True
                if isinstance(e, Abort):
                    self.sink.add(e.diagnostic, scope.path)
                for n in _targets(st):
                    if n not in scope.names:
                        scope.names[n] = Binding(POISON, st.span, "poison", True)
                for n in _names_in(st):  # what a failed statement uses is not "unused"
                    b = scope.lookup(n)
                    if b is not None:
                        b.used = True
        if failed and inputs is not None:
            raise Reported()
        if not ctx.outputs and not any(isinstance(s, A.Output) for s in bd.body):
            self.sink.error("E0303", f"`{bd.name}` has no `output`", bd.name_span, label="defines no output",
                            help="add `output <expr>` at the end of the body")
        written: set[str] | None = None
        for name, b in scope.names.items():
            if failed:
                break  # after an error, "unused" is mostly noise from the statement that failed
            if not b.used and b.kind in ("binding", "input"):
                if b.kind == "binding" and not isinstance(b.value, (TensorVal, TupleVal)):
                    # a number used only where this instance does not go (an `if` not taken, `repeat 0`)
                    # is still used: nothing was computed for it
                    written = _names_in([bd.body, *bd.params]) if written is None else written
                    if name in written:
                        continue
                if b.kind == "input":
                    w = Diagnostic(code="W0301", severity="warning", message=f"input `{name}` is never used",
                                   span=b.span, label="declared here")
                else:
                    w = Diagnostic(code="W0302", severity="warning", message=f"`{name}` is computed but never used",
                                   span=b.span, label="bound here", help=f"remove it, or use `{name}`")
                self.sink.add(w, scope.path)
        inst.outputs = [(t.node, t.port) for t, _ in ctx.outputs]
        inst.output_names = [n for _, n in ctx.outputs]
        return ctx.outputs

    def _stmt(self, st, ctx: "_Ctx"):
        if isinstance(st, A.Input):
            self._input(st, ctx)
        elif isinstance(st, A.Bind):
            start = len(self.ir.order)
            self._bind(st, ctx)
            if st.init is not None:
                self._init_decls(st.init.entries, ctx, self.ir.order[start:])
            if st.sparsity is not None:
                self._sparsity_clause(st.sparsity, ctx, self.ir.order[start:])
        elif isinstance(st, A.InitStmt):
            self._init_decls(st.entries, ctx, None)
        elif isinstance(st, A.SparsityStmt):
            self._init_decls(st.entries, ctx, None, self.ir.meta.sparsity)
        elif isinstance(st, A.Parametrization):
            self._parametrization(st, ctx)
        elif isinstance(st, A.Output):
            for i, item in enumerate(st.items):
                start = len(self.ir.order)
                self._output_item(item, i, st, ctx)
                if item.init is not None:
                    self._init_decls(item.init.entries, ctx, self.ir.order[start:])
                if item.sparsity is not None:
                    self._sparsity_clause(item.sparsity, ctx, self.ir.order[start:])
        elif isinstance(st, A.Ensure):
            self._ensure(st, ctx)
        elif isinstance(st, A.If):
            c = self._cond(st.cond, ctx.scope)
            branch = st.then if c else (st.orelse or [])
            for s in branch:
                self._stmt(s, ctx)

    def _parametrization(self, st: A.Parametrization, ctx: "_Ctx") -> None:
        """Record the model's parametrization with its arguments evaluated; checked by its pass."""
        from .ir import ParametrizationDecl

        if ctx.scope.path:
            self.fail("E0504", "a parametrization is for a whole model: declare it in the model's body, not in "
                      "a block", st.span, label="inside a block")
        if self.ir.meta.parametrization is not None:
            self.fail("E0504", "a model has one parametrization", st.span, label="a second one",
                      secondary=[Label(span=self.ir.meta.parametrization.span, message="the first")])
        e = st.rule
        if isinstance(e, A.Name):
            name, args = e.id, []
        elif isinstance(e, A.Call) and isinstance(e.func, A.Name):
            name, args = e.func.id, e.args
        else:
            self.fail("E0504", "a parametrization is a name or a call: `mup(base_width=128)`", e.span)
        vals = {}
        for a in args:
            if a.name is None:
                self.fail("E0504", "parametrization arguments are named: `mup(base_width=128, width=\"D\")`",
                          a.span)
            v = self.ev(a.value, ctx.scope, None, const=True)
            if isinstance(v, Dim) and v.is_const:
                v = v.value
            if not isinstance(v, (int, float, str)) or isinstance(v, bool):
                self.fail("E0504", f"`{a.name}` must be a number or a string", a.value.span)
            vals[a.name] = v
        self.ir.meta.parametrization = ParametrizationDecl(name=name, args=vals, span=st.span)

    def _sparsity_clause(self, clause, ctx: "_Ctx", nodes: list[str]) -> None:
        """`sparsity rule` after a binding: a rule for the `weight` of every layer the binding creates."""
        entry = A.InitEntry(span=clause.span, key=["weight"], key_span=clause.span, rule=clause.rule)
        self._init_decls([entry], ctx, nodes, self.ir.meta.sparsity)

    def _init_decls(self, entries: list, ctx: "_Ctx", nodes: list[str] | None, into: list | None = None) -> None:
        """Record init rules (or storage rules: `into` is `ir.meta.sparsity`) where they are declared; the
        init and sparsity passes evaluate them per parameter, where the shape and fans are known. A
        statement's clause keys a parameter (`weight`) or an op kind and a parameter; a block's keys an op
        kind (`linear.weight`, `conv2d.*`) or any (`*.bias`)."""
        from .init import INIT_NAMES

        decls = self.ir.meta.inits if into is None else into
        group = len(decls) if nodes is not None else -1
        for e in entries:
            parts = e.key
            if len(parts) == 1:
                op, param = None, parts[0]
            else:
                op, param = parts
            op = None if op == "*" else op
            param = None if param == "*" else param
            env = {}
            for n in _names_in(e.rule):
                if n in INIT_NAMES:
                    continue
                b = ctx.scope.lookup(n)
                if b is not None and not isinstance(b.value, (TensorVal, TupleVal)):
                    b.used = True
                    env[n] = encode(b.value)
            # built without validation: the parts are checked, and a clause's entries share one node list
            decls.append(make(InitDecl, op=op, param=param, rule=e.rule, env=env, scope=ctx.scope.path,
                              span=e.span, key_span=e.key_span, nodes=nodes, group=group, order=len(decls)))

    def _output_item(self, item, i: int, st, ctx: "_Ctx") -> None:
        """One item of an `output` statement; an unnamed output takes the binding's name (`output y`), else
        `out`, `out0`, ..."""
        default = item.value.id if isinstance(item.value, A.Name) else None
        name = item.name or default or ("out" if len(st.items) == 1 else f"out{i}")
        if item.name:
            self._check_new(item.name, ctx.scope, item.span)
        v = self.ev(item.value, ctx.scope, name)
        if isinstance(v, TupleVal) and not item.name:
            for j, t in enumerate(v.items):
                ctx.outputs.append((t, f"{name}{j}"))
            return
        if not isinstance(v, TensorVal):
            self.fail("E0106", f"an output must be a tensor, got {describe(v)}", item.value.span)
        if item.name:
            ctx.scope.names[item.name] = Binding(v, item.span, "output", True)
        ctx.outputs.append((v, name))

    def _check_new(self, name: str, scope: Scope, span: Span):
        prev = scope.names.get(name)
        if prev is not None:
            self.fail("E0105", f"`{name}` is defined twice", span, label="second definition",
                      secondary=[Label(span=prev.span, message="first defined here")],
                      help="every binding names a layer; choose a new name")

    def _input(self, st: A.Input, ctx: "_Ctx"):
        assert self.ir is not None
        self._check_new(st.name, ctx.scope, st.name_span)
        dtype = st.dtype or "float32"
        if dtype not in DTYPES:
            self.fail("E0106", f"unknown dtype `{dtype}`", st.span, help=f"dtypes: {', '.join(DTYPES)}")
        block_level = ctx.inputs is not None
        dims, axes = [], []
        ellipsis = None
        for e in st.shape:
            if isinstance(e, A.Ellipsis):
                if not block_level:
                    self.fail("E0111", "`...` is only allowed in the inputs of a block", e.span,
                              help="a model's inputs need a fixed rank; give every axis")
                if ellipsis is not None:
                    self.fail("E0111", "a shape may contain `...` only once", e.span)
                ellipsis = len(dims)
                continue
            if isinstance(e, A.Name) and ctx.scope.lookup(e.id) is None:
                sym = scoped(e.id, ctx.scope.path if block_level else None)
                d = Dim.sym(sym)
                ctx.scope.names[e.id] = Binding(d, e.span, "dim", True)
                if not block_level and e.id not in self.ir.meta.free_dims:
                    self.ir.meta.free_dims.append(e.id)
                dims.append(d)
                axes.append(e.id)
                ctx.scope.axis_names.add(e.id)
                continue
            v = self.ev(e, ctx.scope, None, const=True)
            if isinstance(v, int) and not isinstance(v, bool):
                v = Dim.const(v)
            if not isinstance(v, Dim):
                self.fail("E0106", f"a dim must be an integer, got {describe(v)}", e.span)
            if v.is_const and not 0 < v.value <= MAX_DIM:
                self.fail("E0112" if v.value > 0 else "E0111", f"dim {v.value} is out of range (1 .. 2**40)", e.span)
            dims.append(v)
            axes.append(e.id if isinstance(e, A.Name) else None)
            if isinstance(e, A.Name):
                ctx.scope.axis_names.add(e.id)
        decl = TensorType.make(dims, dtype, axes)
        self._room(st.span)
        if block_level:
            val, vspan = ctx.inputs[self._input_i]
            self._input_i += 1
            nid = self._new_id(ctx.scope.path, st.name)
            self.ir.add_node(make(
                Node, id=nid, op="block_input", attrs={"shape": dims, "dtype": dtype, "axes": axes, "name": st.name,
                                                 "ellipsis": ellipsis},
                scope=ctx.scope.path, local=st.name, span=st.span, arg_spans=[vspan], binding=st.name, tie=None,
                outputs=[], params=[], flops=None))
            self.ir.add_edge(val.node, val.port, nid, 0)
            ctx.inst.inputs.append(nid)
        else:
            nid = self._new_id("", st.name)
            self.ir.add_node(make(
                Node, id=nid, op="input", attrs={"shape": dims, "dtype": dtype, "axes": axes, "name": st.name},
                scope="", local=st.name, span=st.span, arg_spans=[], binding=st.name, tie=None,
                outputs=[], params=[], flops=None))
            self.ir.meta.inputs.append(make(ModelInput, name=st.name, node=nid, type=decl))
        if st.acted_by:
            self._actions(st, nid, axes, block_level, ctx)
        ctx.scope.names[st.name] = Binding(TensorVal(nid, 0), st.name_span, "input")

    def _bind(self, st: A.Bind, ctx: "_Ctx"):
        seen: dict[str, Span] = {}
        for n, sp in zip(st.targets, st.target_spans):
            self._check_new(n, ctx.scope, sp)
            if n in seen:
                self.fail("E0105", f"`{n}` is defined twice", sp, label="second definition",
                          secondary=[Label(span=seen[n], message="first defined here")],
                          help="every binding names a layer; choose a new name")
            seen[n] = sp
        name = st.targets[0] if len(st.targets) == 1 else "_".join(st.targets)
        v = self.ev(st.value, ctx.scope, name)
        if len(st.targets) == 1:
            ctx.scope.names[name] = Binding(v, st.target_spans[0])
            return
        items = v.items if isinstance(v, TupleVal) else v if isinstance(v, list) else None
        if items is None or len(items) != len(st.targets):
            n = len(items) if items is not None else 1
            self.fail("E0113", f"{len(st.targets)} names on the left but {n} value{'s' if n != 1 else ''} on the right",
                      st.span, label=f"this gives {describe(v)}")
        for n, sp, item in zip(st.targets, st.target_spans, items):
            ctx.scope.names[n] = Binding(item, sp)

    def _group(self, name: str, span, ctx: "_Ctx", file: str | None = None) -> A.GroupDef:
        groups = self.prog.groups.get(file if file is not None else ctx.scope.file, {})
        g = groups.get(name)
        if g is None:
            import difflib

            near = difflib.get_close_matches(name, list(groups), n=1)
            self.fail("E0801", f"unknown group `{name}`", span, label="no group of this name",
                      help=f"did you mean `{near[0]}`?" if near else "declare it at the top of the file: "
                      "`group S = perm(N)`")
        return g

    def _factors(self, name: str, span, ctx: "_Ctx", file: str | None = None) -> list:
        """The factors of group `name` (nndsl/symmetry/groups.py), or E0801 at its definition."""
        from .symmetry.groups import GroupSyntaxError, factors

        g = self._group(name, span, ctx, file)
        try:
            return factors(g.value)
        except GroupSyntaxError as err:
            self.fail("E0801", f"group `{name}`: {err.message}", err.span, label="not a group nndsl knows",
                      help=err.help or None)

    def _actions(self, st: A.Input, nid: str, axes: list, block_level: bool, ctx: "_Ctx") -> None:
        """`acted by G, ...`: per factor of each group, the axes it acts on, by the dims its definition
        names (a factor whose dims the input lacks acts on it trivially; one factor at least must act)."""
        if block_level:
            self.fail("E0801", "groups act on a model's inputs; a block's inputs carry the action they are "
                      "given", st.acted_span)
        shape = self.ir.node(nid).attrs["shape"]
        for name in st.acted_by:
            fs = self._factors(name, st.acted_span, ctx)
            found = []
            for k, f in enumerate(fs):
                dims = f.dims
                if f.family == "grid":
                    if len(dims) == 1:
                        at = [i for i, a in enumerate(axes) if a == dims[0]]
                        if len(at) not in (0, 2):
                            self.fail("E0801", f"`{f.describe()}` rotates the two axes of dim `{dims[0]}`, but "
                                      f"`{st.name}` has {len(at)}", st.acted_span,
                                      help=f"declare the grid with one dim for both axes: `[B, C, {dims[0]}, "
                                      f"{dims[0]}]`, or name both: `{f.kind}(H, W)`")
                    else:
                        at = [axes.index(d) for d in dims if d in axes]
                        if len(at) == 1:
                            self.fail("E0801", f"`{st.name}` has only one of the axes `{dims[0]}`, `{dims[1]}` "
                                      f"that `{name}` rotates", st.acted_span)
                        if at and shape[at[0]] != shape[at[1]]:
                            self.fail("E0801", f"`{f.describe()}` rotates a square grid, but `{st.name}` is "
                                      f"{shape[at[0]]} by {shape[at[1]]}", st.acted_span,
                                      help=f"declare both axes with one dim: `[B, C, S, S]` and `group {name} = "
                                      f"{f.kind}(S)`")
                    for role, i in zip(("row", "col"), at):
                        found.append(make(GroupAction, group=name, kind=f.kind, node=nid, axis=i, dim=axes[i],
                                                 span=st.acted_span, factor=k, role=role))
                    continue
                for i, a in enumerate(axes):          # every axis of that dim, with one action: [B, N, N] edges
                    if a != dims[0]:
                        continue
                    want = len(f.gens[0]) if f.gens else None
                    if f.family == "linear" and not (shape[i].is_const and 1 <= shape[i].value <= 8 and
                                                     want in (None, shape[i].value)):
                        self.fail("E0801", f"`{f.describe()}` acts on coordinates: the axis `{a}` of `{st.name}` "
                                  f"must have a known size " + (f"of {want} (its matrices are {want}x{want})" if want
                                                               else "from 1 to 8") + f", got {shape[i]}",
                                  st.acted_span, help=f"e.g. `input points: [B, N, {a}]` with `{a}: int = "
                                  f"{want or 3}`")
                    found.append(make(GroupAction, group=name, kind=f.kind, node=nid, axis=i, dim=a, span=st.acted_span,
                                             factor=k, role="vec" if f.family == "linear" else "perm",
                                             gens=[[list(r) for r in m] for m in f.gens]))
            if not found:
                dims = list(dict.fromkeys(d for f in fs for d in f.dims))
                want = " or ".join(f"`{d}`" for d in dims)
                g = self._group(name, st.acted_span, ctx)
                self.fail("E0801", f"`{st.name}` has no axis {want} for group `{name}` to act on", st.acted_span,
                          label=f"axes: {', '.join(a for a in axes if a) or 'none named'}",
                          secondary=[Label(span=g.value.span, message=f"`{name}` acts on the "
                                           f"ax{'i' if len(dims) == 1 else 'e'}s named {', '.join(f'`{d}`' for d in dims)}")])
            self.ir.meta.actions.extend(found)

    def _claim(self, st: A.Ensure, ctx: "_Ctx") -> None:
        """`ensure y invariant|equivariant under S`: recorded for the equivariance pass."""
        self._factors(st.group, st.group_span, ctx)
        v = self.ev(st.expr, ctx.scope, None)
        if not isinstance(v, TensorVal):
            self.fail("E0106", f"`ensure ... {st.claim} under {st.group}` needs a tensor, got {describe(v)}",
                      st.expr.span)
        name = st.expr.id if isinstance(st.expr, A.Name) else "this tensor"
        self.ir.meta.claims.append(make(SymmetryClaim, claim=st.claim, group=st.group, node=v.node, port=v.port,
                                                 tensor=name, span=st.span, scope=ctx.scope.path))

    def _ensure(self, st: A.Ensure, ctx: "_Ctx"):
        assert self.ir is not None
        if st.claim is not None:
            self._claim(st, ctx)
            return
        try:
            v = self.ev(st.expr, ctx.scope, None, const=True, ensure=True)
        except (Deferred, Undecidable):
            # divisibility facts on symbolic dims are assumptions the checker uses
            e = st.expr
            if isinstance(e, A.Compare) and e.op == "==" and isinstance(e.left, A.BinOp) and e.left.op == "%":
                try:
                    num = self.ev(e.left.left, ctx.scope, None, const=True)
                    den = self.ev(e.left.right, ctx.scope, None, const=True)
                    zero = self.ev(e.right, ctx.scope, None, const=True)
                    if isinstance(num, (Dim, int)) and isinstance(den, (Dim, int)) and zero == 0:
                        self.facts.add(Dim.of(num), Dim.of(den))
                except (Deferred, Undecidable):
                    pass
            names = _names_in(st.expr)
            env = {}
            for n in names:
                b = ctx.scope.lookup(n)
                if b is not None:
                    b.used = True
                    env[n] = encode(b.value)
            self.ir.meta.ensures.append(make(EnsureCheck, expr=st.expr, env=env, scope=ctx.scope.path, span=st.span))
            return
        if v is not True:
            if v is False:
                self.fail("E0206", "ensure failed", st.span, label="this is false", notes=explain(st.expr, self.evaluator, ctx.scope))
            self.fail("E0106", f"`ensure` needs a condition, got {describe(v)}", st.expr.span)

    # -- naming -------------------------------------------------------------------------------------
    def _new_id(self, scope_path: str, local: str) -> str:
        base = f"{scope_path}.{local}" if scope_path else local
        nid, k = base, 1
        while nid in self.used_ids:
            nid = f"{base}_{k}"
            k += 1
        self.used_ids.add(nid)
        return nid

    # -- calls ----------------------------------------------------------------------------------------
    def _callee(self, f: A.Expr, scope: Scope):
        if isinstance(f, A.Name):
            fname = f.id
        elif isinstance(f, A.Attr) and isinstance(f.value, A.Name):
            fname = f"{f.value.id}.{f.name}"
        else:
            self.fail("E0106", "only operations and blocks can be called", f.span)
        if fname in scope.blocks:
            return fname, scope.blocks[fname]
        od = O.get(fname)
        if od is not None:
            return fname, od
        if fname in BUILTINS:
            return fname, None
        b = scope.lookup(fname)
        if b is not None:
            self.fail("E0106", f"`{fname}` is {describe(b.value)}, not an operation or block", f.span)
        sug = O.suggest(fname, list(scope.blocks))
        self.fail("E0102", f"unknown operation or block `{fname}`", f.span, label="not defined",
                  help=f"did you mean `{sug}`?" if sug else "define it with `block`, or import it from the standard library")

    def _call(self, e: A.Call, scope: Scope, name: str | None, piped: list[tuple[Any, Span]], ensure=False):
        if isinstance(e.func, A.Name) and e.func.id == "frame_average" and "frame_average" not in scope.blocks:
            return self._frame_average(e, scope, name, piped)
        fname, target = self._callee(e.func, scope)
        if target is None:
            return self.evaluator.builtin(fname, e, scope, ensure)
        pos: list[tuple[Any, Span]] = list(piped)
        kw: dict[str, tuple[Any, Span]] = {}
        tie = None
        sub = _sub(name)                 # nodes made inside the arguments are named after the binding
        for a in e.args:
            if a.name is not None and a.name == "tie":
                v = a.value
                if isinstance(v, A.Call) and isinstance(v.func, A.Name) and v.func.id == "transpose" and \
                        len(v.args) == 1 and v.args[0].name is None:      # `tie=transpose(enc)`: W = encᵀ
                    tie = (self._tie_target(v.args[0].value, scope), a.value.span, True)
                else:
                    tie = (self._tie_target(v, scope), a.value.span, False)
                continue
            at = target.attr(a.name) if a.name and isinstance(target, O.OpDef) else None
            if at is None:
                v = self.ev(a.value, scope, sub)
            elif at.type == "group":
                v = self._grid_group(a.value, scope, fname)
            else:
                self._axis_names = at.type == "axes"      # unknown names in an `axes=` value are axis names
                try:
                    v = self._axes_value(a.value, scope, sub) if at.type == "axes" else self.ev(a.value, scope, sub)
                finally:
                    self._axis_names = False
            if a.name is None:
                if kw:
                    self.fail("E0104", "a positional argument follows a keyword argument", a.span)
                pos.append((v, a.value.span))
            else:
                if a.name in kw:
                    self.fail("E0104", f"`{a.name}` is given twice", a.span)
                kw[a.name] = (v, a.value.span)
                sp = a.span
                self._kw_spans[a.name] = Span(sp.file, sp.line, sp.col, sp.line, sp.col + len(a.name))
        if isinstance(target, A.ActDef):
            if tie is not None:
                self.fail("E0114", "`tie=` applies to operations with parameters, not to an act", tie[1])
            if not pos or not isinstance(pos[0][0], TensorVal):
                self.fail("E0106", f"`{fname}` takes a tensor first", e.span)
            tree = self._act_tree(target, e.span, pos[1:], dict(kw), ["x"], [])
            return self._op_call(O.get("fn"), pos[:1], {"name": (fname, e.span), "expr": (tree, e.span)}, scope,
                                 name, e.span, None)
        if isinstance(target, A.BlockDef):
            if tie is not None:
                self.fail("E0114", "`tie=` applies to operations, not blocks", tie[1])
            return self._instantiate(target, fname, pos, kw, scope, _local_name(name, fname.lower()), e.span)
        return self._op_call(target, pos, kw, scope, name, e.span, tie)

    def _axes_value(self, e, scope: Scope, sub):
        """An `axes=` argument. A name an input of the block declares as an axis is that axis, even where it
        is also a parameter: `input x: [B, C, H, W]` then `mean(x, axes=[C])` is the channel axis, not
        axis number C (ConvNeXt's LayerNorm2d written out)."""
        items = e.items if isinstance(e, A.ListExpr) else [e]
        if not any(isinstance(x, A.Name) and x.id in scope.axis_names for x in items):
            return self.ev(e, scope, sub)
        out = []
        for x in items:
            b = scope.lookup(x.id) if isinstance(x, A.Name) and x.id in scope.axis_names else None
            if b is not None and b.kind == "param":
                b.used = True
                out.append(x.id)
            else:
                out.append(self.ev(x, scope, sub))
        return out if isinstance(e, A.ListExpr) else out[0]

    def _frame_average(self, e: A.Call, scope: Scope, name: str | None, piped):
        """`frame_average(Block(x, ...), group=G, equivariant=false)`: the block instance, marked to run once per
        frame of G's finite or coordinate factor and average (nndsl/symmetry/runtime.py); the equivariance pass
        fills in the roles its inputs and outputs carry."""
        from .ir import FrameAverage

        usage = "write `frame_average(Block(x), group=G)`, with the block's call inside"
        if piped:
            self.fail("E0106", "`frame_average` takes the block call as its argument, not a piped tensor", e.span,
                      help=usage)
        pos = [a for a in e.args if a.name is None]
        kw = {}
        for a in e.args:
            if a.name is not None:
                if a.name not in ("group", "equivariant"):
                    self.fail("E0104", f"`frame_average` has no argument `{a.name}`", a.span,
                              help="its arguments: the block call, `group=`, `equivariant=`")
                if a.name in kw:
                    self.fail("E0104", f"`{a.name}` is given twice", a.span)
                kw[a.name] = a
        if len(pos) != 1 or not isinstance(pos[0].value, A.Call):
            self.fail("E0106", "`frame_average` averages one block call", e.span, help=usage)
        inner = pos[0].value
        fname, target = self._callee(inner.func, scope)
        if not isinstance(target, A.BlockDef):
            self.fail("E0106", f"`frame_average` averages a block; `{fname}` is not one", inner.func.span,
                      help="wrap the layers in a `block` and average a call of it")
        if "group" not in kw or not isinstance(kw["group"].value, A.Name):
            self.fail("E0106", "`frame_average` needs the group to average over: `group=G`", e.span, help=usage)
        gname, gspan = kw["group"].value.id, kw["group"].value.span
        fs = self._factors(gname, gspan, None, scope.file)
        averaged = [k for k, f in enumerate(fs) if f.kind in ("cyclic", "dihedral") or f.family in ("grid", "linear")]
        if len(averaged) != 1:
            self.fail("E0801", f"`frame_average` averages over one factor of a finite or coordinate group; `{gname}` "
                      f"has {len(averaged)}", gspan,
                      help="perm(N) has N! elements: build the block from equivariant layers instead"
                      if not averaged else "average over one factor; the others are checked through the block")
        equivariant = False
        if "equivariant" in kw:
            equivariant = self.ev(kw["equivariant"].value, scope, None, const=True)
            if not isinstance(equivariant, bool):
                self.fail("E0106", f"`equivariant` expects true or false, got {describe(equivariant)}",
                          kw["equivariant"].value.span)
        before = set(self.ir.meta.instances)
        v = self._call(inner, scope, name, [])
        path = next(p for p in self.ir.meta.instances if p not in before)
        fac = fs[averaged[0]]
        elements = []
        if fac.gens:
            from .symmetry.groups import closure

            elements = [[list(r) for r in m] for m in closure(fac.gens, gspan)]
            if len(elements) > 64:
                self.fail("E0801", f"`frame_average` over `{gname}` would run the block {len(elements)} times; "
                          "at most 64", gspan, help="average over a smaller group")
        self.ir.meta.instances[path].frame = FrameAverage(group=gname, factors=averaged, kind=fac.kind,
                                                          equivariant=equivariant, span=e.span, inputs=[],
                                                          out_roles=[], elements=elements)
        self.ir.meta.frames.append(path)
        return v

    def _grid_group(self, e: A.Expr, scope: Scope, op: str) -> dict:
        """`group=R` of an op, as the record of the factor it uses: for a group convolution R's grid factor
        ({"kind": "c4" | "d4"}), for an equivariant linear map of one axis its one other factor ({"kind",
        "gens"}). Only this makes a `group` attribute: a value written in its place is E0106."""
        from .symmetry.groups import GroupSyntaxError, factors

        if not isinstance(e, A.Name):
            self.fail("E0106", f"`group=` of `{op}` names a group declared with `group`", e.span,
                      help="e.g. `group R = c4(S)` at the top of the file, then `group=R`")
        g = self.prog.groups.get(scope.file, {}).get(e.id)
        if g is None:
            near = difflib.get_close_matches(e.id, list(self.prog.groups.get(scope.file, {})), n=1)
            self.fail("E0801", f"unknown group `{e.id}`", e.span, label="no group of this name",
                      help=f"did you mean `{near[0]}`?" if near else "declare it at the top of the file: "
                      "`group R = c4(S)`")
        try:
            fs = factors(g.value)
        except GroupSyntaxError as err:
            self.fail("E0801", f"group `{e.id}`: {err.message}", err.span, help=err.help or None)
        if op != "gconv2d":
            axis = [f for f in fs if f.family != "grid" and f.kind != "e3"]
            if len(axis) != 1:
                self.fail("E0801", f"`{op}` needs a group with one factor acting on its last axis (`perm`, `cyclic`, "
                          f"`dihedral`, `matrices`, `o3`, `so3`); `{e.id}` has {len(axis)}", e.span,
                          secondary=[Label(span=g.value.span, message=f"`{e.id}` is defined here")],
                          help="a grid's equivariant layer is `gconv2d`")
            return {"kind": axis[0].kind, "gens": [[list(r) for r in m] for m in axis[0].gens]}
        grid = [f for f in fs if f.family == "grid"]
        if len(grid) != 1:
            self.fail("E0801", f"`{op}` needs a group with one grid factor (`c4(...)` or `d4(...)`); `{e.id}` has "
                      f"{len(grid)}", e.span, secondary=[Label(span=g.value.span, message=f"`{e.id}` is defined here")])
        return {"kind": grid[0].kind}

    def _tie_target(self, e: A.Expr, scope: Scope) -> str:
        """The node a `tie=` names: an earlier binding (`tie=wte`), or a layer inside an earlier block
        instance (`tie=transformer.wte`, the layer's name in that block)."""
        full, path = e.span, []
        while isinstance(e, A.Attr):
            path.insert(0, e.name)
            e = e.value
        if not isinstance(e, A.Name):
            self.fail("E0114", "`tie=` must name an earlier layer: `tie=wte` or `tie=block.wte`", e.span)
        written = ".".join([e.id] + path)
        tb = scope.lookup(e.id)
        if tb is None or not isinstance(tb.value, TensorVal):
            self.fail("E0114", f"`tie={written}` does not name an earlier layer", e.span,
                      help="tie to a binding defined before this line, e.g. `tie=wte`, or to a layer of an "
                           "earlier block instance, e.g. `tie=encoder.wte`")
        tb.used = True
        if not path:
            return tb.value.node
        base = f"{scope.path}.{e.id}" if scope.path else e.id
        if base not in self.ir.meta.instances:
            self.fail("E0114", f"`{e.id}` is a single layer, not a block instance: `tie={written}` names nothing "
                      f"inside it", e.span, help=f"write `tie={e.id}`")
        nid = f"{base}.{'.'.join(path)}"
        if nid not in self.ir.g:
            inside = sorted(n[len(base) + 1:] for n in self.ir.g.nodes if n.startswith(base + ".")
                            and "." not in n[len(base) + 1:] and self.ir.node(n).op not in ("block_input",))
            sug = difflib.get_close_matches(".".join(path), inside, n=1)
            self.fail("E0114", f"`{e.id}` has no layer named `{'.'.join(path)}`", full,
                      help=f"did you mean `tie={e.id}.{sug[0]}`?" if sug else
                      f"its layers: {', '.join(inside[:12]) or 'none'}")
        return nid

    def _op_call(self, od: O.OpDef, pos, kw, scope: Scope, name, span: Span, tie):
        tensors: list[TensorVal] = []
        tspans: list[Span] = []
        variadic = od.variadic
        n_fixed = len(od.inputs) - (1 if variadic else 0)
        rest: list = []
        if variadic:
            # every tensor argument is an input, wherever it stands: einsum("ij,jk->ik", a, b)
            for v, sp in pos:
                if isinstance(v, TupleVal):
                    tensors.extend(v.items)
                    tspans.extend([sp] * len(v.items))
                elif isinstance(v, list) and v and all(isinstance(x, TensorVal) for x in v):
                    tensors.extend(v)
                    tspans.extend([sp] * len(v))
                elif isinstance(v, TensorVal):
                    tensors.append(v)
                    tspans.append(sp)
                else:
                    rest.append((v, sp))
        else:
            pos = _spread_tuple(pos, n_fixed)
            i = 0
            while i < len(pos) and i < n_fixed:
                v, sp = pos[i]
                if not isinstance(v, TensorVal):
                    self.fail("E0106", f"`{od.name}` expects a tensor for `{od.inputs[i]}`, got {describe(v)}", sp,
                              label=f"this is {describe(v)}")
                tensors.append(v)
                tspans.append(sp)
                i += 1
            rest = pos[i:]
        if len(tensors) < n_fixed:
            self.fail("E0104", f"`{od.name}` takes {n_fixed} tensor input{'s' if n_fixed != 1 else ''} "
                      f"({', '.join(od.inputs)}) but {len(tensors)} {'was' if len(tensors) == 1 else 'were'} given", span)
        free_attrs, kw_attr, slots = self._op_slots(od)
        # Binding and checking attributes is a function of the values given: a call with the values of an
        # earlier one (every layer of a stack) takes its result
        key = _bind_key(od.name, rest, kw) if kw_attr is None else None
        hit = self._bound.get(key) if key is not None else None
        if hit is not None:
            return self._make_node(od, tensors, dict(hit), name, scope, span, tspans, tie=tie,
                                   attr_spans=_attr_spans(rest, slots, kw))
        sizes: dict[str, Any] = {}

        def too_many(n):
            v, sp = rest[n]
            if isinstance(v, TensorVal):
                self.fail("E0104", f"`{od.name}` takes {n_fixed} tensor input{'s' if n_fixed != 1 else ''}, got more",
                          sp, label="one tensor too many")
            self.fail("E0104", f"`{od.name}` takes at most {n} positional attribute{'s' if n != 1 else ''} after "
                      f"its inputs", sp, label="unexpected argument", notes=[f"signature: {signature(od)}"])

        def missing(slot):
            self.fail("E0107", f"`{od.name}` needs `{slot.name}`", span, notes=[f"signature: {signature(od)}"])

        attrs = bind_call(od.name, slots, rest, kw, span, fail=self.fail, too_many=too_many, missing=missing,
                          unknown=lambda k, sp: self._unknown_kw(k, [a.name for a in free_attrs], sp, od.name),
                          rest=(lambda k, v, sp: sizes.__setitem__(k, _coerce_attr(od, O.Attr(k, "dim"), v, sp)))
                          if kw_attr else None)
        if kw_attr is not None:      # `rearrange(x, "...", p=16)`: the keywords no attribute has are sizes
            attrs[kw_attr.name] = sizes
        attr_spans = _attr_spans(rest, slots, kw)
        if od.check_attrs is not None and _concrete_attrs(attrs):
            try:
                od.check_attrs(attrs)
            except O.OpError as err:
                at, label = O.attr_span(err, attrs, attr_spans) or (span, err.label)
                self.fail(err.code, err.message, at, label=label,
                          secondary=[Label(span=span, message=f"in this `{od.name}`")] if at is not span else [],
                          help=err.help)
        if key is not None:
            self._bound[key] = dict(attrs)
        return self._make_node(od, tensors, attrs, name, scope, span, tspans, tie=tie, attr_spans=attr_spans)

    def _op_slots(self, od: O.OpDef) -> tuple:
        """An op's attributes as call slots (made once per op): (attributes, the `**sizes` one, slots)."""
        got = self._slots.get(od.name)
        if got is None:
            free = [a for a in od.attrs if a.type != "kwargs"]
            got = self._slots[od.name] = (free, next((a for a in od.attrs if a.type == "kwargs"), None),
                                          Slots(_attr_slot(od, at) for at in free))
        return got

    def _make_node(self, op: "str | O.OpDef", tensors: list[TensorVal], attrs: dict, name: str | None, scope: Scope,
                   span: Span, tspans: list[Span], tie=None, attr_spans: dict | None = None):
        """A node of op `op` (a name or the op's record); it keeps the list `tspans` (callers build it for it)."""
        assert self.ir is not None
        self._room(span)
        if isinstance(op, O.OpDef):
            od, op = op, op.name
        else:
            od = O.get(op)
        n_out = od.outputs_for(attrs)
        if n_out.__class__ is not int or not 1 <= n_out <= 4096:     # not a plain count in range: say why
            if isinstance(n_out, Dim):
                n_out = n_out.value if n_out.is_const else None
            if not isinstance(n_out, int) or isinstance(n_out, bool):
                self.fail("E0115", f"the number of outputs of `{od.name}` must be known at compile time", span,
                          help="give it as a literal or a parameter, not a dim from an input shape")
            if not 1 <= n_out <= 4096:
                self.fail("E0111", f"`{od.name}` would have {n_out} outputs; it needs 1 to 4096", span)
        nid = self._new_id(scope.path, _local_name(name, op))
        node = from_fields(Node, {
            "id": nid, "op": od.name, "attrs": attrs, "scope": scope.path,
            "local": nid[len(scope.path) + 1:] if scope.path else nid, "span": span, "arg_spans": tspans,
            "attr_spans": attr_spans,
            "binding": str(name) if name and not isinstance(name, Nested) else None, "tie": tie[0] if tie else None,
            "outputs": [], "params": [], "flops": None, "recipe": None, "axes": [], "facets": {}})
        if tie is not None:
            node.attrs = dict(attrs, tie_span=tie[1].model_dump())
            if tie[2]:
                target = self.ir.node(tie[0])
                if od.name != "linear" or target.scope != scope.path:
                    self.fail("E0114", f"a transposed tie applies to a `linear`, not `{od.name}`" if od.name != "linear"
                              else "a transposed tie must name a layer of the same block or model", tie[1],
                              help="e.g. `decoder = linear(h, D, tie=transpose(encoder))`")
                node.attrs["tie_transposed"] = True
        self.ir.add_node(node)
        for port, t in enumerate(tensors):
            self.ir.add_edge(t.node, t.port, nid, port)
        if n_out == 1:
            return TensorVal(nid, 0)
        return TupleVal(tuple(TensorVal(nid, i) for i in range(n_out)))

    # -- pipelines and blocks ---------------------------------------------------------------------
    def _pipe(self, e: A.Pipe, scope: Scope, name: str | None):
        base = _local_name(name, "pipe")
        head_is_stage = isinstance(e.head, A.Call) and not self.evaluator.is_builtin(e.head)
        counts = [self._stage_count(st, scope) for st in e.stages]
        total = sum(counts) + (1 if head_is_stage else 0)
        if head_is_stage:
            v = self.ev(e.head, scope, base if total == 1 else f"{base}.0")
        else:
            v = self.ev(e.head, scope, None)
        return self._chain(e.stages, counts, v, e.head.span, scope, base, 1 if head_is_stage else 0, total)

    def _chain(self, stages, counts, v, vspan: Span, scope: Scope, base: str, k: int, total: int):
        """Apply stages to v. Stage k is named `base.k` (just `base` when the chain has one stage, unless a
        `repeat` made it: an nn.Sequential built by a loop numbers even one layer); `repeat N { S }` counts
        as N stages, exactly as if S were written N times."""
        single = total == 1 and not any(isinstance(st, A.Repeat) for st in stages)
        name = lambda i: base if single else f"{base}.{i}"  # noqa: E731
        for st, n in zip(stages, counts):
            if isinstance(st, A.Repeat):
                body_counts = [self._stage_count(b, scope) for b in st.stages]
                before = len(self.ir)
                names = self._iteration_names(st, n, scope)
                for j in range(n):
                    if j == 1:  # one iteration done: what all of them will cost is known before unrolling them
                        per = len(self.ir) - before
                        if len(self.ir) + per * (n - 1) > self.limits.nodes:
                            self.fail("E0112", f"this `repeat` would create about {per * n:,} nodes, more than the "
                                      f"limit of {self.limits.nodes:,}", st.span,
                                      label=f"{n:,} iterations of {per:,} nodes",
                                      help="raise the limit with --max-nodes (limits= in the API)")
                    sc = scope
                    if st.var:
                        loop = Scope(path=scope.path, file=scope.file, blocks=scope.blocks)
                        loop.names = {st.var: Binding(j, st.span, "loop", True)}
                        sc = _Overlay(scope, loop)
                    it_name = f"{base}.{names[j]}" if names is not None else name(k + j)
                    v = self._chain(st.stages, body_counts, v, vspan, sc, it_name, 0, sum(body_counts))
                k += n
            elif isinstance(st, A.IfStage):
                if n:         # the branch taken is one stage; its own stages nest under it, as a repeat's do
                    branch = self._branch(st, scope)
                    counts = [self._stage_count(b, scope) for b in branch]
                    v = self._chain(branch, counts, v, vspan, scope, name(k), 0, sum(counts))
                k += n
            else:
                v = self._stage(st, v, vspan, scope, name(k))
                k += 1
        return v

    def _stage_count(self, st: A.Expr, scope: Scope) -> int:
        """How many stages of a chain `st` stands for: a repeat's count, 1 or 0 for an `if` stage."""
        if isinstance(st, A.Repeat):
            return self._repeat_count(st, scope)
        if isinstance(st, A.IfStage):
            return 1 if self._branch(st, scope) else 0
        return 1

    def _branch(self, st: A.IfStage, scope: Scope) -> list:
        return st.then if self._cond(st.cond, scope) else (st.orelse or [])

    _TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\s*(?:([+-])\s*(\d{1,9}))?\}")

    def _iteration_names(self, st: A.Repeat, n: int, scope: Scope) -> list[str] | None:
        """The names of the iterations of `repeat N as i "layer{i+1}"`: the template with `{i}`, `{i+K}` or
        `{i-K}` replaced. Each name must be a plain name, distinct, and acceptable to nn.ModuleDict."""
        if st.names is None:
            return None
        from .pyemit import MODULE_ATTRS

        def render(j: int) -> str:
            def sub(m):
                if m.group(1) != st.var:
                    self.fail("E0111", f"the name template can use only `{{{st.var}}}`, not `{{{m.group(1)}}}`",
                              st.span, help=f'e.g. "layer{{{st.var}+1}}"')
                k = int(m.group(3) or 0)
                return str(j + k if m.group(2) != "-" else j - k)
            return self._TEMPLATE.sub(sub, st.names)

        out = [render(j) for j in range(n)]
        seen: dict[str, int] = {}
        for j, nm in enumerate(out):
            if not re.fullmatch(r"[A-Za-z0-9_]+", nm) or nm in MODULE_ATTRS or nm in _MODULEDICT_ATTRS:
                self.fail("E0111", f"iteration {j} of this `repeat` would be named `{nm}`, which cannot name a "
                          f"layer", st.span, help='use letters, digits, `_` and `{i}`: "block{i}"')
            if nm in seen:
                self.fail("E0105", f"iterations {seen[nm]} and {j} of this `repeat` are both named `{nm}`", st.span,
                          help=f'put `{{{st.var}}}` in the name template, e.g. "{nm}{{{st.var}}}"')
            seen[nm] = j
        return out

    def _repeat_count(self, st: A.Repeat, scope: Scope) -> int:
        n = self.ev(st.count, scope, None, const=True)
        if isinstance(n, Dim):
            if not n.is_const:
                self.fail("E0115", "a repeat count must be known at compile time", st.count.span)
            n = n.value
        if not isinstance(n, int) or isinstance(n, bool):
            self.fail("E0106", f"a repeat count must be an int, got {describe(n)}", st.count.span)
        if n < 0:
            self.fail("E0111", f"a repeat count must not be negative, got {n}", st.count.span)
        if n > self.limits.nodes:
            self.fail("E0112", f"repeat {n:,} exceeds the node limit of {self.limits.nodes:,}", st.count.span,
                      help="raise the limit with --max-nodes (limits= in the API)")
        return n

    def _stage(self, st: A.Expr, v, vspan: Span, scope: Scope, name: str):
        if not isinstance(v, (TensorVal, TupleVal)):
            self.fail("E0106", f"only tensors can be piped, this is {describe(v)}", vspan)
        piped = [(v, vspan)]
        if isinstance(st, A.Call):
            return self._call(st, scope, name, piped)
        if isinstance(st, (A.Name, A.Attr)):
            call = A.Call(span=st.span, func=st, args=[])
            return self._call(call, scope, name, piped)
        if isinstance(st, A.Pipe):  # a nested chain, `x |> (conv |> bn) |> relu`: its stages are `name.0`, ...
            stages = [st.head, *st.stages]
            counts = [self._stage_count(s, scope) for s in stages]
            return self._chain(stages, counts, v, vspan, scope, name, 0, sum(counts))
        self.fail("E0106", "a pipeline stage must be an operation, a block, `repeat` or a chain in parentheses",
                  st.span, help="write `x |> relu`, `x |> conv2d(64, kernel=3)`, `x |> repeat 2 { Block(64) }` "
                                "or `x |> (conv2d(64, kernel=3) |> relu)`")

    def _instantiate(self, bd: A.BlockDef, fname: str, pos, kw, scope: Scope, name: str, span: Span):
        assert self.ir is not None
        if bd.is_model:
            self.fail("E0106", f"`{bd.name}` is a model; only blocks can be used inside other definitions",
                      span, help=f"declare it with `block {bd.name}`")
        if bd.name in self.stack:
            self.fail("E0116", f"block `{bd.name}` instantiates itself", span,
                      notes=[f"instantiation chain: {' -> '.join(self.stack + [bd.name])}"])
        if len(self.stack) >= self.limits.block_depth:
            self.fail("E0112", f"blocks nested more than {self.limits.block_depth} deep", span)
        n_in = sum(isinstance(s, A.Input) for s in bd.body)
        pos = _spread_tuple(pos, n_in)
        tensors = []
        for v, sp in pos[:n_in]:
            if isinstance(v, TupleVal):
                self.fail("E0113", f"`{bd.name}` expects a single tensor here, got {describe(v)}", sp)
            if not isinstance(v, TensorVal):
                self.fail("E0106", f"`{bd.name}` expects {n_in} tensor input{'s' if n_in != 1 else ''} first, "
                          f"got {describe(v)}", sp, secondary=[Label(span=bd.name_span, message="defined here")])
            tensors.append((v, sp))
        if len(tensors) < n_in:
            self.fail("E0104", f"`{bd.name}` takes {n_in} tensor input{'s' if n_in != 1 else ''} but "
                      f"{len(tensors)} {'was' if len(tensors) == 1 else 'were'} given", span,
                      secondary=[Label(span=bd.name_span, message="defined here")])
        params = self._bind_params(bd, pos[n_in:], kw, span)
        cost_key = (id(bd), repr(encode(params)))
        known = self._block_cost.get(cost_key)
        if known is not None:  # an identical instance was built before: its size is known before unrolling
            self._room(span, known)
        before = len(self.ir)
        path = self._new_id(scope.path, name)
        self.used_ids.discard(path)  # the path names a module, its nodes live below it
        self.used_ids.add(path + "#inst")
        inst = make(Instance, path=path, block=bd.name, file=bd.span.file, params=encode(params), parent=scope.path,
                        span=span)
        self.ir.meta.instances[path] = inst
        inner = Scope(path=path, file=bd.span.file, blocks=self.prog.scopes.get(bd.span.file, scope.blocks))
        self.stack.append(bd.name)
        saved = self._input_i
        try:
            outs = self._body(bd, inner, params, tensors, inst)
        finally:
            self.stack.pop()
            self._input_i = saved
        self._block_cost[cost_key] = len(self.ir) - before
        if not outs:
            self.fail("E0303", f"`{bd.name}` has no output", span)
        if len(outs) == 1:
            return outs[0][0]
        return TupleVal(tuple(t for t, _ in outs))


class _Overlay(Scope):
    """A scope that adds loop variables on top of another without copying it."""

    def __init__(self, base: Scope, extra: Scope):
        super().__init__(path=base.path, file=base.file, names=base.names, blocks=base.blocks)
        self._extra = extra
        self._base = base

    def lookup(self, name: str):
        b = self._extra.names.get(name)
        return b if b is not None else self._base.lookup(name)

    def all_names(self):
        return list(self._extra.names) + self._base.all_names()


@dataclass
class _Ctx:
    bd: A.BlockDef
    scope: Scope
    inst: Instance
    inputs: list | None
    outputs: list


def _targets(st) -> list[str]:
    if isinstance(st, A.Bind):
        return list(st.targets)
    if isinstance(st, A.Output):
        return [i.name for i in st.items if i.name]
    if isinstance(st, A.If):
        return [n for s in st.then + (st.orelse or []) for n in _targets(s)]
    if isinstance(st, A.Input):
        return [st.name]
    return []


def _local_name(name: str | None, op: str) -> str:
    if name is None:
        return op
    if isinstance(name, Nested):
        return f"{name}_{op}"
    return name


def _names_in(e) -> set[str]:
    out: set[str] = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, A.Name):
            out.add(x.id)
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, A.Node):
            stack.extend(getattr(x, f) for f in A.fields_of(x))
        elif isinstance(x, A.Arg):
            stack.append(x.value)
    return out


_KEYED = frozenset((int, str, float, bool, type(None), Dim))


def _bind_key(op: str, rest: list, kw: dict) -> tuple | None:
    """The attribute values of an op call as a dict key (each with its type: 1, 1.0 and True are equal
    keys in a dict, not here); None when one is not a plain value."""
    for v, _sp in rest:
        if v.__class__ not in _KEYED:
            return None
    for v, _sp in kw.values():
        if v.__class__ not in _KEYED:
            return None
    return (op, tuple((v.__class__, v) for v, _sp in rest),
            tuple((k, v.__class__, v) for k, (v, _sp) in kw.items()))


def _attr_spans(rest: list, slots, kw: dict) -> dict | None:
    """Where string attributes are written, for errors inside them (None: no string attribute)."""
    out = None
    for (v, sp), slot in zip(rest, slots):
        if v.__class__ is str:
            out = out or {}
            out[slot.name] = sp
    for k, (v, sp) in kw.items():
        if v.__class__ is str:
            out = out or {}
            out[k] = sp
    return out


def _spread_tuple(pos: list, n_inputs: int) -> list:
    """A tuple given (or piped) first to a callee with several tensor inputs fills them in order:
    `chunk(x, 2) |> matmul`, `(q, k, v) |> attention` as `attention(q, k, v)`. Each item keeps the span
    of the expression that made the tuple."""
    if n_inputs >= 2 and pos and isinstance(pos[0][0], TupleVal):
        v, sp = pos[0]
        return [(item, sp) for item in v.items] + list(pos[1:])
    return pos


def _fail(code: str, message: str, span: Span | None, **kw):
    raise Abort(Diagnostic(code=code, message=message, span=span, **kw))


def _coerce_attr(od: O.OpDef, at: O.Attr, v, sp: Span):
    """An op attribute's value as its type wants it (a module function: the op slots that call it outlive no
    elaborator)."""
    t = at.type
    bad = lambda want: _fail("E0106", f"`{at.name}` of `{od.name}` expects {want}, got {describe(v)}", sp,  # noqa: E731
                                 label=f"this is {describe(v)}")
    if isinstance(v, (TensorVal, TupleVal)) and t != "any":
        bad("a value known at compile time")
    if v is None:
        return None
    if isinstance(v, Dim) and v.is_const and t not in ("axes",):
        v = v.value
    if t == "int":
        if isinstance(v, bool):
            bad("an int")
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, (int, Dim)):
            if isinstance(v, int) and abs(v) > MAX_DIM:
                _fail("E0112", f"`{at.name}` = {v} is beyond the limit of 2**40", sp)
            if isinstance(v, int):
                _in_range(od, at, v, sp)
            return v
        bad("an int")
    if t == "float":
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = float(v)
            if v != v or v in (float("inf"), float("-inf")):
                _fail("E0111", f"`{at.name}` of `{od.name}` must be a finite number, got {v}", sp)
            _in_range(od, at, v, sp)
            return v
        bad("a number")
    if t == "bool":
        if isinstance(v, bool):
            return v
        bad("true or false")
    if t == "str":
        if isinstance(v, str):
            if at.choices and v not in at.choices:
                _fail("E0111", f"`{at.name}` of `{od.name}` must be one of "
                          f"{', '.join(repr(c) for c in at.choices)}, got {v!r}", sp)
            return v
        bad("a string")
    if t == "ints":  # window sizes: kernel, stride, padding, dilation (32-bit in PyTorch)
        out = None
        if isinstance(v, int) and not isinstance(v, bool):
            out = v
        elif isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in
                                               [y.value if isinstance(y, Dim) and y.is_const else y for y in v]):
            out = [y.value if isinstance(y, Dim) else y for y in v]
        if out is None:
            bad("an int or a list of ints")
        if any(abs(x) > 2 ** 31 - 1 for x in (out if isinstance(out, list) else [out])):
            _fail("E0112", f"`{at.name}` of `{od.name}` is beyond 2**31 - 1", sp, label="too large")
        return out
    if t == "dim":
        if isinstance(v, (int, Dim)) and not isinstance(v, bool):
            return v if isinstance(v, Dim) else Dim.const(v)
        bad("an int")
    if t == "dims":
        if isinstance(v, list) and all(isinstance(x, (int, Dim)) and not isinstance(x, bool) for x in v):
            out = [Dim.of(x) for x in v]
            for d in out:
                if d.is_const and abs(d.value) > MAX_DIM:
                    _fail("E0112", f"dim {d.value} is beyond the limit of 2**40", sp)
            return out
        bad("a list of dims")
    if t == "axes":
        items = v if isinstance(v, list) else [v]
        out = []
        for x in items:
            if isinstance(x, Dim):
                n = x.symbol_name()
                if n is None:
                    bad("axis names or indices")
                out.append(sym_name(n))
            elif isinstance(x, (int, str)) and not isinstance(x, bool):
                out.append(x)
            else:
                bad("axis names or indices")
        return out if isinstance(v, list) else out[0]
    if t == "group":             # resolved by _grid_group to a factor's record; the evaluator makes no dicts
        if isinstance(v, dict):
            return v
        bad("a group declared with `group`, as `group=R`")
    if t == "any":
        if isinstance(v, (TensorVal, TupleVal)):
            bad("a value known at compile time")
        return v
    raise AssertionError(t)

def _in_range(od: O.OpDef, at: O.Attr, v, sp: Span) -> None:
    lo_bad = at.lo is not None and (v <= at.lo if at.lo_open else v < at.lo)
    hi_bad = at.hi is not None and v > at.hi
    if lo_bad or hi_bad:
        lo = "" if at.lo is None else (f"> {at.lo:g}" if at.lo_open else f">= {at.lo:g}")
        rng = (f"in [{at.lo:g}, {at.hi:g}]" if at.lo is not None and at.hi is not None and not at.lo_open
               else " and ".join(x for x in (lo, "" if at.hi is None else f"<= {at.hi:g}") if x))
        _fail("E0111", f"`{at.name}` of `{od.name}` must be {rng}, got {v:g}", sp, label="out of range")


def _attr_slot(od: O.OpDef, at: O.Attr) -> Slot:
    """An op attribute as a call slot."""
    return Slot(at.name, lambda v, sp: _coerce_attr(od, at, v, sp), REQUIRED if at.required else at.default)


def _concrete(v) -> bool:
    if isinstance(v, Dim):
        return v.is_const
    if isinstance(v, (list, tuple)):
        return all(map(_concrete, v))
    if isinstance(v, dict):
        return all(map(_concrete, v.values()))
    return True


def _concrete_attrs(attrs: dict) -> bool:
    return all(map(_concrete, attrs.values()))


def _literal(v) -> str:
    """A value as it is written in `.nn`."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def signature(od: O.OpDef) -> str:
    parts = list(od.inputs)
    for a in od.attrs:
        if a.type == "kwargs":
            parts.append("**sizes")
        elif a.required:
            parts.append(f"{a.name}: {a.type}")
        else:
            parts.append(f"{a.name}: {a.type} = {_literal(a.default)}")
    return f"{od.name}({', '.join(parts)})"
