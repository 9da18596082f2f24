"""The AST of `.nn` files: plain dataclasses with slots, every node carrying its source span.

The parser builds one node per grammar rule it reduces, tens of thousands for a large spec, so nodes are
as cheap to make as Python objects get: a slotted dataclass is built three (keywords) to six (positional,
as `Span`) times faster than a pydantic model, even one made without validation. Pydantic still
describes them: `to_json` / `from_json` dump an AST and read one back with full validation (discriminated
by each node's `kind`), through a TypeAdapter built on first use; every node answers pydantic's
`model_dump`, `model_dump_json`, `model_validate` and `model_validate_json` the same way. Nodes are not
mutated after parsing; equality and hashing are by value.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from ..diagnostics import Span

# keyword-only (fields may be added anywhere) and slots (small and fast to build). Equality, hashing and
# repr come from _Record, once for all: generated per class they doubled the module's import time.
node = dataclasses.dataclass(slots=True, kw_only=True, eq=False, repr=False)


class _Record:
    """Value equality, hashing and repr by fields, for every AST class."""

    __slots__ = ()

    def _values(self) -> tuple:
        return tuple(getattr(self, f) for f in _all_fields(type(self)))

    def __eq__(self, other) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{f}={getattr(self, f)!r}' for f in _all_fields(type(self)))})"

    # pydantic's model API, through a TypeAdapter per class (made on first use): dump and validate
    def model_dump(self, mode: str = "python", **kw) -> dict:
        return _adapter_for(type(self)).dump_python(self, mode=mode, **kw)

    def model_dump_json(self, **kw) -> str:
        return _adapter_for(type(self)).dump_json(self, **kw).decode()

    @classmethod
    def model_validate(cls, obj):
        return _adapter_for(cls).validate_python(obj)

    @classmethod
    def model_validate_json(cls, data: str | bytes):
        return _adapter_for(cls).validate_json(data)


@node
class Node(_Record):
    span: Span


def fields_of(x: Node) -> tuple[str, ...]:
    """The names of a node's fields other than its span, in declared order (for walks over the tree)."""
    return _field_names(type(x))


@functools.lru_cache(maxsize=None)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f for f in _all_fields(cls) if f != "span")


@functools.lru_cache(maxsize=None)
def _all_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


# -- expressions ------------------------------------------------------------------------------
@node
class Num(Node):
    kind: Literal["num"] = "num"
    value: Union[int, float]
    text: str


@node
class Str(Node):
    kind: Literal["str"] = "str"
    value: str


@node
class Bool(Node):
    kind: Literal["bool"] = "bool"
    value: bool


@node
class Name(Node):
    kind: Literal["name"] = "name"
    id: str


@node
class Ellipsis(Node):
    """`...` in a block input shape: any number of leading (or middle) axes."""

    kind: Literal["ellipsis"] = "ellipsis"


@node
class ListExpr(Node):
    kind: Literal["list"] = "list"
    items: list["Expr"]


@node
class Arg(Node):
    name: Optional[str] = None
    value: "Expr"


@node
class Call(Node):
    kind: Literal["call"] = "call"
    func: "Expr"
    args: list[Arg]


@node
class Attr(Node):
    kind: Literal["attr"] = "attr"
    value: "Expr"
    name: str


@node
class Index(Node):
    kind: Literal["index"] = "index"
    value: "Expr"
    index: "Expr"


@node
class BinOp(Node):
    kind: Literal["binop"] = "binop"
    op: str
    left: "Expr"
    right: "Expr"
    op_span: Span


@node
class Compare(Node):
    kind: Literal["compare"] = "compare"
    op: str
    left: "Expr"
    right: "Expr"


@node
class BoolOp(Node):
    kind: Literal["boolop"] = "boolop"
    op: Literal["and", "or"]
    values: list["Expr"]


@node
class Not(Node):
    kind: Literal["not"] = "not"
    value: "Expr"


@node
class Neg(Node):
    kind: Literal["neg"] = "neg"
    value: "Expr"


@node
class Cond(Node):
    kind: Literal["cond"] = "cond"
    cond: "Expr"
    then: "Expr"
    orelse: "Expr"


@node
class Repeat(Node):
    kind: Literal["repeat"] = "repeat"
    count: "Expr"
    var: Optional[str] = None
    names: Optional[str] = None     # a name template for the iterations: "denselayer{i+1}"
    stages: list["Expr"]


@node
class IfStage(Node):
    """`if cond { stages }` (optionally `else { stages }`) in a chain: one stage of the chain when the
    branch taken has stages, none otherwise (`if` with no `else` and a false condition)."""
    kind: Literal["if_stage"] = "if_stage"
    cond: "Expr"
    then: list["Expr"]
    orelse: Optional[list["Expr"]] = None


@node
class Pipe(Node):
    kind: Literal["pipe"] = "pipe"
    head: "Expr"
    stages: list["Expr"]


Expr = Annotated[
    Union[Num, Str, Bool, Name, Ellipsis, ListExpr, Call, Attr, Index, BinOp, Compare, BoolOp, Not, Neg, Cond,
          Repeat, IfStage, Pipe],
    Field(discriminator="kind"),
]


# -- statements -------------------------------------------------------------------------------
@node
class Input(Node):
    kind: Literal["input"] = "input"
    name: str
    name_span: Span
    shape: list[Expr]
    dtype: Optional[str] = None
    # groups acting on this input's axes (`acted by S`)
    acted_by: list[str] = dataclasses.field(default_factory=list)
    acted_span: Optional[Span] = None


@node
class InitEntry(Node):
    """`key: rule` in an init clause: the key names a parameter (`weight`), an op kind and a parameter
    (`linear.weight`, `conv2d.*`, `*.bias`); the rule is an expression (`normal(0, 1 / sqrt(fan_in))`)."""

    key: list[str]
    key_span: Span
    rule: Expr


@node
class InitClause(Node):
    entries: list[InitEntry]


@node
class SparsityClause(Node):
    """`sparsity rule` after a binding: how the weights of the layers it creates are stored."""

    rule: Expr


@node
class Bind(Node):
    kind: Literal["bind"] = "bind"
    targets: list[str]
    target_spans: list[Span]
    value: Expr
    init: Optional[InitClause] = None      # for the layers this binding creates
    sparsity: Optional[SparsityClause] = None


@node
class OutputItem(Node):
    name: Optional[str] = None
    value: Expr
    init: Optional[InitClause] = None
    sparsity: Optional[SparsityClause] = None


@node
class Output(Node):
    kind: Literal["output"] = "output"
    items: list[OutputItem]


@node
class Ensure(Node):
    kind: Literal["ensure"] = "ensure"
    expr: Expr
    claim: Optional[str] = None         # `ensure y invariant under S`: "invariant" or "equivariant"
    group: Optional[str] = None
    group_span: Optional[Span] = None


@node
class If(Node):
    kind: Literal["if"] = "if"
    cond: Expr
    then: list["Stmt"]
    orelse: Optional[list["Stmt"]] = None


@node
class InitStmt(Node):
    """`init { ... }` as a statement: rules for every layer of the block (and the blocks it calls)."""

    kind: Literal["init"] = "init"
    entries: list[InitEntry]


@node
class SparsityStmt(Node):
    """`sparsity { ... }` as a statement: storage rules by op kind and parameter for the whole block
    (and the blocks it calls); keys as in `init { ... }`."""

    kind: Literal["sparsity"] = "sparsity"
    entries: list[InitEntry]


@node
class Parametrization(Node):
    """`parametrization mup(base_width=128)`: how init, multipliers and learning rates scale with width."""

    kind: Literal["parametrization"] = "parametrization"
    rule: Expr


Stmt = Annotated[Union[Input, Bind, Output, Ensure, If, InitStmt, SparsityStmt, Parametrization],
                 Field(discriminator="kind")]


# -- top level --------------------------------------------------------------------------------
@node
class Param(Node):
    name: str
    type: str
    type_span: Span
    default: Optional[Expr] = None


@node
class Import(Node):
    kind: Literal["import"] = "import"
    path: Optional[str] = None        # a quoted file path, relative to the importing file
    module: Optional[str] = None      # a dotted standard-library module name
    alias: Optional[str] = None


@node
class BlockDef(Node):
    kind: Literal["block"] = "block"
    is_model: bool = False
    name: str
    name_span: Span
    params: list[Param]
    body: list[Stmt]


@node
class ActDef(Node):
    """`act swishy(x) = x * sigmoid(1.702 * x)`: an elementwise function of one tensor and numbers."""

    kind: Literal["act"] = "act"
    name: str
    name_span: Span
    arg: str
    params: list[Param] = dataclasses.field(default_factory=list)
    body: Expr


@node
class GroupDef(Node):
    """`group S = perm(N)`: a group and the axis it acts on, named by a dim."""

    kind: Literal["group"] = "group"
    name: str
    name_span: Span
    value: Expr


Item = Annotated[Union[Import, BlockDef, ActDef, GroupDef], Field(discriminator="kind")]


@node
class Module(_Record):
    file: str
    items: list[Item]


@functools.lru_cache(maxsize=None)
def _adapter_for(cls: type):
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


def to_dict(m: Module, mode: str = "json") -> dict:
    """The AST as plain data (spans included)."""
    return m.model_dump(mode=mode)


def to_json(m: Module) -> str:
    return m.model_dump_json()


def from_json(text: str | bytes) -> Module:
    """An AST read back from `to_json`, validated: every field's type and every node's `kind`."""
    return Module.model_validate_json(text)
