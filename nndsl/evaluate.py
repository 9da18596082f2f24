"""Expression evaluation: values, dims, comparisons and built-ins, for every pass that evaluates spec
expressions (elaboration, the `ensure` checks after shape inference, and later init-rule expressions).

The evaluator knows values; what an expression does to the graph it asks its host, an object with:

    tensor_op(op, tensors, attrs, name, scope, span, arg_spans) -> TensorVal   # `x + y`, `-x`, `a @ b`
    call(e, scope, name, ensure)      # a call that is not a built-in (an op or a block)
    pipe(e, scope, name)              # a pipeline `x |> ...`
    shape_of(t: TensorVal)            # the type of a tensor, or raise Deferred while it is not known
    missing(e: A.Name, scope, ensure) # a name no scope binds: report it, or give it a meaning

Hosts: `elaborate.Elaborator` (builds the graph), `passes.ensures` (evaluates after shapes, creates
nothing). No pass subclasses another to evaluate.
"""
from __future__ import annotations

import math

import operator
from dataclasses import dataclass, field
from typing import Any

from .diagnostics import Abort, Diagnostic, Span
from .dims import Dim, Facts
from .limits import DEFAULT, Limits
from .syntax import ast as A
from .values import SizedList, TensorVal, TupleVal, describe, value_size

# elementwise math: on numbers computed when the spec is checked, on a tensor the op of the same name
MATH = {"sqrt": math.sqrt, "exp": math.exp, "log": math.log, "cos": math.cos, "abs": abs}
BUILTINS = {"shape", "len", "min", "max_of", "int", "float", "rank", *MATH}


class Deferred(Exception):
    """An `ensure` needs shapes: evaluate it after shape inference."""


class Undecidable(Exception):
    """A comparison of symbolic dims that cannot be decided now."""


class Reported(Exception):
    """Unwinds a statement whose error has already been reported."""


class _PoisonT:
    def __repr__(self) -> str:
        return "<poison>"


POISON = _PoisonT()  # the value of a binding whose definition failed: using it reports nothing more


@dataclass
class Binding:
    value: Any
    span: Span
    kind: str = "binding"          # binding | input | param | dim | loop
    used: bool = False


@dataclass
class Scope:
    path: str                      # instance path ("" for the model)
    file: str
    names: dict[str, Binding] = field(default_factory=dict)
    blocks: dict[str, A.BlockDef] = field(default_factory=dict)
    axis_names: set[str] = field(default_factory=set)     # names the inputs' shapes declare as axes

    def lookup(self, name: str) -> Binding | None:
        return self.names.get(name)

    def all_names(self) -> list[str]:
        return list(self.names)


class Nested(str):
    """The name context of a sub-expression: nodes created there are called `<binding>_<op>`."""


def _sub(name: str | None) -> str | None:
    if name is None:
        return None
    return name if isinstance(name, Nested) else Nested(name)


REQUIRED = object()
TENSOR_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "//": "floordiv", "%": "mod", "**": "pow"}
CMP_OPS = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


@dataclass
class Slot:
    """One bindable argument of a block or an op: its name, how a value is coerced to it, its default
    (a value, REQUIRED, or a function of the arguments bound so far: a block default may use earlier
    parameters)."""

    name: str
    coerce: Any                    # (value, span) -> value, or raises a Diagnostic
    default: Any = REQUIRED


class Slots(tuple):
    """A callee's slots, made once per callee, with their index by name."""

    def __new__(cls, slots):
        self = super().__new__(cls, slots)
        self.by_name = {s.name: s for s in self}
        return self


def bind_call(what: str, slots: list[Slot], pos: list, kw: dict, span: Span, *, fail, too_many, missing,
              unknown, rest=None, overrides: dict | None = None, noun: str = "") -> dict:
    """Bind the positional and keyword arguments of a call to `slots`, for blocks and ops alike:
    positionals in order, keywords by name (`rest(k, value, span)` is given the keywords no slot has, when
    the callee accepts any), `overrides` (model parameters from the command line), then defaults.
    The callbacks word the errors: `too_many(i)`, `missing(slot)`, `unknown(keyword, span)`."""
    by_name = slots.by_name if type(slots) is Slots else {s.name: s for s in slots}
    out: dict[str, Any] = {}
    if len(pos) > len(slots):
        too_many(len(slots))
    for (v, sp), slot in zip(pos, slots):
        out[slot.name] = slot.coerce(v, sp)
    for k, (v, sp) in kw.items():
        slot = by_name.get(k)
        if slot is None:
            if rest is None:
                unknown(k, sp)
            rest(k, v, sp)
            continue
        if k in out:
            fail("E0104", f"{noun}`{k}` of `{what}` is given twice", sp)
        out[k] = slot.coerce(v, sp)
    for k, v in (overrides or {}).items():
        if k in by_name:
            out[k] = by_name[k].coerce(v, span)
    for slot in slots:
        if slot.name not in out:
            if slot.default is REQUIRED:
                missing(slot)
            out[slot.name] = slot.default(out) if callable(slot.default) else slot.default
    if not kw and not overrides:     # positionals, then defaults: already in the slots' order
        return out
    return {s.name: out[s.name] for s in slots}


def _dotted(e) -> str:
    if isinstance(e, A.Name):
        return e.id
    if isinstance(e, A.Attr):
        return f"{_dotted(e.value)}.{e.name}"
    return "?"


class Evaluator:
    def __init__(self, host: Any, limits: Limits = DEFAULT, facts: Facts | None = None):
        self.host = host
        self.limits = limits
        self.facts = facts          # divisibility facts dim arithmetic may use (passed, never global)

    def fail(self, code: str, message: str, span: Span | None, **kw):
        raise Abort(Diagnostic(code=code, message=message, span=span, **kw))

    def is_builtin(self, e: A.Call) -> bool:
        return isinstance(e.func, A.Name) and e.func.id in BUILTINS

    def check_size(self, v: "SizedList", span: Span) -> None:
        if v.size > self.limits.value_items:
            self.too_big(v.size, span)

    def too_big(self, n: int, span: Span):
        self.fail("E0112", f"this value would hold {n:,} elements, more than the limit of "
                  f"{self.limits.value_items:,}", span, label="too large",
                  help="strings and lists are for attributes and shapes, not data")

    def cond(self, e: A.Expr, scope: Scope) -> bool:
        try:
            c = self.ev(e, scope, None, const=True)
        except Undecidable:
            self.fail("E0115", "this condition depends on dims that are only known from input shapes", e.span,
                      help="conditions may use parameters and literals")
        if isinstance(c, Dim) and c.is_const:
            c = c.value
        if not isinstance(c, bool):
            self.fail("E0106", f"a condition must be a bool, got {describe(c)}", e.span)
        return c

    def ev(self, e: A.Expr, scope: Scope, name: str | None, const: bool = False, ensure: bool = False):
        """Evaluate an expression. `name` is the binding the created nodes are named after; `const`
        forbids creating nodes (conditions, shapes); `ensure` allows shape()/params (deferred)."""
        k = e.kind
        if k == "name":                  # the commonest two first: an argument, a layer
            return self._name(e, scope, ensure)
        if k == "call":
            f = e.func
            if type(f) is A.Name and f.id in MATH and f.id not in scope.blocks:
                return self._math(f.id, e, scope, name, const, ensure)
            if const and not ensure and not self.is_builtin(e):
                self.fail("E0115", "a layer cannot be created here: this position needs a value known at "
                          "compile time", e.span)
            return self.host.call(e, scope, name, ensure)
        if k == "num" or k == "str" or k == "bool":
            return e.value
        if k == "list":
            out = SizedList(self.ev(x, scope, _sub(name), const, ensure) for x in e.items)
            self.check_size(out, e.span)
            return out
        if k == "neg":
            v = self.ev(e.value, scope, _sub(name), const, ensure)
            if isinstance(v, TensorVal):
                return self.host.tensor_op("mul", [v], {"scalar": -1, "reverse": False}, name, scope, e.span, [e.value.span])
            if isinstance(v, (int, float, Dim)) and not isinstance(v, bool):
                return -v
            self.fail("E0106", f"cannot negate {describe(v)}", e.span)
        if k == "binop":
            return self._binop(e, scope, name, const, ensure)
        if k == "compare":
            return self._compare(e, scope, ensure, name, const)
        if k == "boolop":
            vals = []
            for x in e.values:
                v = self.ev(x, scope, None, True, ensure)
                if not isinstance(v, bool):
                    self.fail("E0106", f"`{e.op}` needs bools, got {describe(v)}", x.span)
                vals.append(v)
                if e.op == "and" and not v:
                    return False
                if e.op == "or" and v:
                    return True
            return e.op == "and"
        if k == "not":
            v = self.ev(e.value, scope, None, True, ensure)
            if not isinstance(v, bool):
                self.fail("E0106", f"`not` needs a bool, got {describe(v)}", e.value.span)
            return not v
        if k == "cond":
            c = self.cond(e.cond, scope)
            return self.ev(e.then if c else e.orelse, scope, name, const, ensure)
        if k == "index":
            v = self.ev(e.value, scope, None, const, ensure)
            i = self.ev(e.index, scope, None, True, ensure)
            if isinstance(i, Dim) and i.is_const:
                i = i.value
            if isinstance(v, TupleVal):
                v = list(v.items)
            if not isinstance(v, list):
                self.fail("E0106", f"cannot index {describe(v)}", e.value.span,
                          help="use `select(x, axis, index)` or `slice(...)` for tensors" if isinstance(v, TensorVal) else None)
            if not isinstance(i, int) or isinstance(i, bool):
                self.fail("E0106", f"an index must be an int, got {describe(i)}", e.index.span)
            if not -len(v) <= i < len(v):
                self.fail("E0111", f"index {i} is out of range for a list of {len(v)}", e.index.span)
            return v[i]
        if k == "pipe":
            if const:
                self.fail("E0115", "a pipeline cannot be used here", e.span)
            return self.host.pipe(e, scope, name)
        if k == "attr":
            self.fail("E0101", f"unknown name `{_dotted(e)}`", e.span)
        if k in ("repeat", "if_stage"):
            self.fail("E0106", f"`{'repeat' if k == 'repeat' else 'if { ... }'}` is a pipeline stage: write "
                      f"`x |> {'repeat N' if k == 'repeat' else 'if cond'} {{ ... }}`", e.span)
        raise AssertionError(f"unhandled expression {k}")

    def _is_builtin(self, e: A.Call) -> bool:
        return isinstance(e.func, A.Name) and e.func.id in BUILTINS

    def _name(self, e: A.Name, scope: Scope, ensure: bool):
        b = scope.lookup(e.id)
        if b is not None:
            b.used = True
            if b.value is POISON:
                raise Reported()
            return b.value
        return self.host.missing(e, scope, ensure)

    def _binop(self, e: A.BinOp, scope: Scope, name, const, ensure):
        a = self.ev(e.left, scope, _sub(name), const, ensure)
        b = self.ev(e.right, scope, _sub(name), const, ensure)
        op = e.op
        if isinstance(a, TensorVal) or isinstance(b, TensorVal):
            if const:
                self.fail("E0115", "tensor arithmetic cannot be used here", e.span)
            if op == "@":
                if not (isinstance(a, TensorVal) and isinstance(b, TensorVal)):
                    self.fail("E0106", "`@` needs two tensors", e.span)
                return self.host.tensor_op("matmul", [a, b], {}, name, scope, e.span, [e.left.span, e.right.span])
            opname = TENSOR_OPS.get(op)
            if opname is None:
                self.fail("E0106", f"`{op}` is not defined on tensors", e.op_span,
                          help="tensors support `+ - * / // % ** @` and comparisons")
            return self._tensor_binary(opname, op, a, b, e, name, scope)
        return self._arith(op, a, b, e)

    def _tensor_binary(self, opname: str, op: str, a, b, e, name, scope):
        """`x + y`, `x < 0.5`, `2 * x`: a node of the elementwise op, with one side a number or not."""
        for v, sp in ((a, e.left.span), (b, e.right.span)):
            if not isinstance(v, (TensorVal, int, float)) or isinstance(v, bool):
                if not (isinstance(v, Dim) and v.is_const):
                    self.fail("E0106", f"cannot apply `{op}` to a tensor and {describe(v)}", sp)
        if isinstance(a, TensorVal) and isinstance(b, TensorVal):
            return self.host.tensor_op(opname, [a, b], {"scalar": None, "reverse": False}, name, scope, e.span,
                                       [e.left.span, e.right.span])
        if isinstance(a, TensorVal):
            s = b.value if isinstance(b, Dim) else b
            return self.host.tensor_op(opname, [a], {"scalar": s, "reverse": False}, name, scope, e.span, [e.left.span])
        s = a.value if isinstance(a, Dim) else a
        return self.host.tensor_op(opname, [b], {"scalar": s, "reverse": True}, name, scope, e.span, [e.right.span])

    def _arith(self, op, a, b, e: A.BinOp):
        for v, sp in ((a, e.left.span), (b, e.right.span)):
            if isinstance(v, bool) or not isinstance(v, (int, float, Dim)):
                if op == "+" and ((isinstance(a, list) and isinstance(b, list)) or
                                  (isinstance(a, str) and isinstance(b, str))):
                    if value_size(a) + value_size(b) > self.limits.value_items:
                        self.too_big(value_size(a) + value_size(b), e.span)
                    return SizedList(a + b) if isinstance(a, list) else a + b
                self.fail("E0106", f"cannot apply `{op}` to {describe(v)}", sp)
        if op == "**":
            return self._power(a, b, e)
        if isinstance(a, float) or isinstance(b, float):
            a = float(a.value) if isinstance(a, Dim) and a.is_const else a
            b = float(b.value) if isinstance(b, Dim) and b.is_const else b
            if isinstance(a, Dim) or isinstance(b, Dim):
                self.fail("E0106", "cannot mix a symbolic dim with a float", e.span,
                          label=f"`{a if isinstance(a, Dim) else b}` is known only from the input shapes",
                          help="dims are integers: write the float as an integer, or as a fraction of integers")
            try:
                return {"+": a + b, "-": a - b, "*": a * b}[op] if op in "+-*" else \
                    a / b if op == "/" else a // b if op == "//" else a % b if op == "%" else None
            except ZeroDivisionError:
                self.fail("E0111", "division by zero", e.span)
        try:
            if isinstance(a, int) and isinstance(b, int):
                if op == "+":
                    r = a + b
                elif op == "-":
                    r = a - b
                elif op == "*":
                    r = a * b
                elif op == "//":
                    r = a // b
                elif op == "%":
                    r = a % b
                elif op == "/":
                    r = a / b
                    return int(r) if r.is_integer() else r
                else:
                    self.fail("E0106", "`@` needs tensors", e.op_span)
                if abs(r) > 2 ** 62:
                    self.fail("E0112", "integer too large", e.span)
                return r
            A_, B_ = Dim.of(a), Dim.of(b)
            if op == "+":
                r = A_ + B_
            elif op == "-":
                r = A_ - B_
            elif op == "*":
                r = self.facts.simplify(A_ * B_) if self.facts is not None else A_ * B_
            elif op in ("//", "/"):
                r = A_.floordiv(B_, self.facts)
            elif op == "%":
                r = A_.mod(B_, self.facts)
            else:
                self.fail("E0106", "`@` needs tensors", e.op_span)
            r = self._bounded(r, e.span)
            return r.value if r.is_const else r
        except ZeroDivisionError:
            self.fail("E0111", "division by zero", e.span)

    def _bounded(self, r: Dim, span: Span) -> Dim:
        if len(r.terms) > self.limits.dim_terms:
            self.fail("E0112", f"this size expression has {len(r.terms)} terms, more than the limit of "
                      f"{self.limits.dim_terms}", span)
        return r

    def _power(self, a, b, e: A.BinOp):
        """`a ** b` of numbers (an int for ints and a non-negative exponent, else a float), or of a symbolic
        dim and a small constant exponent (`S ** 2`). The size of an integer result is bounded before it is
        computed: `2 ** 1000000000` is refused, not attempted."""
        a = a.value if isinstance(a, Dim) and a.is_const else a
        b = b.value if isinstance(b, Dim) and b.is_const else b
        if isinstance(a, Dim) or isinstance(b, Dim):
            if not (isinstance(a, Dim) and isinstance(b, int) and 0 <= b <= 8):
                self.fail("E0106", "`**` of a symbolic dim takes a constant integer exponent from 0 to 8", e.span,
                          label=f"`{a if isinstance(a, Dim) else b}` is known only from the input shapes")
            r = Dim.const(1)
            for _ in range(b):              # the terms are counted after each product, as for `*`
                r = self._bounded(self.facts.simplify(r * a) if self.facts is not None else r * a, e.span)
            return r.value if r.is_const else r
        if isinstance(a, int) and isinstance(b, int) and b >= 0:
            if abs(a) > 1 and b * math.log2(abs(a)) > 62:
                self.fail("E0112", "integer too large", e.span, label="more than 2**62")
            return a ** b
        try:
            r = float(a) ** float(b)
        except ZeroDivisionError:
            self.fail("E0111", "division by zero", e.span, label=f"`0 ** {b}`")
        except OverflowError:
            self.fail("E0112", "too large for a float", e.span)
        if isinstance(r, complex):
            self.fail("E0111", f"`{f'({a})' if a < 0 else a} ** {b}` has no real value", e.span)
        return r

    def _compare(self, e: A.Compare, scope: Scope, ensure: bool, name=None, const: bool = True):
        a = self.ev(e.left, scope, _sub(name), const, ensure)
        b = self.ev(e.right, scope, _sub(name), const, ensure)
        if isinstance(a, TensorVal) or isinstance(b, TensorVal):   # a mask: `pos < T`, `index == 0`
            if const:
                self.fail("E0115", "a tensor comparison cannot be used here: this position needs a value known "
                          "at compile time", e.span)
            return self._tensor_binary(CMP_OPS[e.op], e.op, a, b, e, name, scope)
        return compare(e.op, a, b, lambda: self.fail("E0106", f"cannot compare {describe(a)} with {describe(b)}", e.span))

    def _math(self, fname: str, e: A.Call, scope: Scope, name, const: bool, ensure: bool):
        """`exp`, `log`, `sqrt`, `cos`, `abs` of a number (a number) or of a tensor (the elementwise op)."""
        if len(e.args) != 1 or e.args[0].name is not None:
            self.fail("E0106", f"`{fname}` takes one argument, a number or a tensor", e.span)
        a = e.args[0].value
        v = self.ev(a, scope, _sub(name), const, ensure)
        if isinstance(v, TensorVal):
            if const:
                self.fail("E0115", "a tensor cannot be used here: this position needs a value known at compile "
                          "time", e.span)
            return self.host.tensor_op(fname, [v], {}, name, scope, e.span, [a.span])
        if isinstance(v, Dim) and v.is_const:
            v = v.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail("E0106", f"`{fname}` takes a number or a tensor, got {describe(v)}", e.span)
        try:
            out = MATH[fname](v)
        except ValueError:
            self.fail("E0111", f"`{fname}` of {v} has no real value", e.span)
        except OverflowError:
            self.fail("E0112", f"`{fname}` of {v} is too large for a float", e.span)
        return out

    def _numbers_only(self, fname: str, e: A.Call):
        self.fail("E0106", f"`{fname}` takes numbers known when the spec is checked, not tensors", e.span,
                  label="a tensor is given here", help=_numbers_only_help(fname))

    def builtin(self, fname: str, e: A.Call, scope: Scope, ensure: bool):
        """`shape`, `rank` (in `ensure`), `len`, `min`, `max_of`, `int`, `float` (`exp`, `log`, `sqrt`, `cos`,
        `abs`: see `_math`)."""
        if fname in ("shape", "rank") and not ensure:
            self.fail("E0115", f"`{fname}` can only be used in `ensure`", e.span,
                      help="shapes are known after elaboration; to use a size, name it in the input "
                           "declaration (`input x: [B, C]`) and use `C`")
        try:
            args = [self.ev(a.value, scope, None, True, ensure) for a in e.args]
        except Abort as ab:
            if ab.diagnostic.message.startswith("tensor arithmetic") and fname not in ("shape", "rank"):
                self._numbers_only(fname, e)
            raise
        if fname not in ("shape", "rank", "len") and any(isinstance(a, (TensorVal, TupleVal)) for a in args):
            self._numbers_only(fname, e)
        if fname in ("shape", "rank"):
            if len(args) != 1 or not isinstance(args[0], TensorVal):
                self.fail("E0106", f"`{fname}` takes one tensor", e.span)
            t = self.host.shape_of(args[0])          # Deferred while shapes are not known
            return t.rank if fname == "rank" else [d.value if d.is_const else d for d in t.shape]
        if fname == "len":
            if len(args) != 1 or not isinstance(args[0], list):
                self.fail("E0106", "`len` takes one list", e.span)
            return len(args[0])
        if fname in ("min", "max_of"):
            if not args or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
                self.fail("E0106", f"`{fname}` takes numbers", e.span)
            return min(args) if fname == "min" else max(args)
        if fname in ("int", "float"):
            if len(args) != 1 or not isinstance(args[0], (int, float)) or isinstance(args[0], bool):
                self.fail("E0106", f"`{fname}` takes one number", e.span)
            if fname == "float":
                return float(args[0])
            x = args[0]
            if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
                self.fail("E0111", f"`int` of {x} has no integer value", e.span)
            if abs(x) > 2 ** 62:
                self.fail("E0112", "integer too large", e.span)
            return int(x)
        raise AssertionError(fname)


def _numbers_only_help(fname: str) -> str:
    return "built-ins compute with numbers known when the spec is checked (parameters, literals); on tensors, " \
        "`exp`, `log`, `sqrt`, `cos`, `abs` and the activations are elementwise ops"


def explain(e, ev: "Evaluator", scope: Scope) -> list[str]:
    """A note with both sides of a failed comparison."""
    if isinstance(e, A.Compare):
        try:
            a = ev.ev(e.left, scope, None, True, True)
            b = ev.ev(e.right, scope, None, True, True)
        except (Abort, Deferred, Undecidable, Reported):
            return []
        return [f"the left side is {_show(a)} and the right side is {_show(b)}"]
    return []


def _show(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10000:
        return f"{v:,}"
    return str(v)


def compare(op: str, a, b, bad):
    if isinstance(a, list) and isinstance(b, list):
        if op not in ("==", "!="):
            bad()
        eq = len(a) == len(b) and all(compare("==", x, y, bad) for x, y in zip(a, b))
        return eq if op == "==" else not eq
    if isinstance(a, (Dim, int)) and isinstance(b, (Dim, int)) and not isinstance(a, bool) and not isinstance(b, bool) \
            and (isinstance(a, Dim) or isinstance(b, Dim)):
        diff = Dim.of(a) - Dim.of(b)
        if not diff.is_const:
            raise Undecidable()
        a, b = diff.value, 0
    if isinstance(a, bool) != isinstance(b, bool) and op in ("==", "!="):
        return op == "!="
    try:
        return _CMP[op](a, b)
    except TypeError:
        bad()


_CMP = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
        ">=": operator.ge}


