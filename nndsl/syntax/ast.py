"""The AST of `.nn` files: pydantic models, every node carrying its source span.

Nodes are built by the parser with `model_construct` (the grammar already guarantees their shape);
`Module.model_validate(json)` reads a dumped AST back with full validation.
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from ..diagnostics import Span
from ..fastmodel import make  # noqa: F401  (re-exported for the parser)


class Node(BaseModel):
    # the parser builds nodes without validation (fastmodel.make): validators are built on first use only
    model_config = ConfigDict(frozen=True, defer_build=True)
    span: Span


# -- expressions ------------------------------------------------------------------------------
class Num(Node):
    kind: Literal["num"] = "num"
    value: Union[int, float]
    text: str


class Str(Node):
    kind: Literal["str"] = "str"
    value: str


class Bool(Node):
    kind: Literal["bool"] = "bool"
    value: bool


class Name(Node):
    kind: Literal["name"] = "name"
    id: str


class Ellipsis(Node):
    """`...` in a block input shape: any number of leading (or middle) axes."""

    kind: Literal["ellipsis"] = "ellipsis"


class ListExpr(Node):
    kind: Literal["list"] = "list"
    items: list["Expr"]


class Arg(Node):
    name: Optional[str] = None
    value: "Expr"


class Call(Node):
    kind: Literal["call"] = "call"
    func: "Expr"
    args: list[Arg]


class Attr(Node):
    kind: Literal["attr"] = "attr"
    value: "Expr"
    name: str


class Index(Node):
    kind: Literal["index"] = "index"
    value: "Expr"
    index: "Expr"


class BinOp(Node):
    kind: Literal["binop"] = "binop"
    op: str
    left: "Expr"
    right: "Expr"
    op_span: Span


class Compare(Node):
    kind: Literal["compare"] = "compare"
    op: str
    left: "Expr"
    right: "Expr"


class BoolOp(Node):
    kind: Literal["boolop"] = "boolop"
    op: Literal["and", "or"]
    values: list["Expr"]


class Not(Node):
    kind: Literal["not"] = "not"
    value: "Expr"


class Neg(Node):
    kind: Literal["neg"] = "neg"
    value: "Expr"


class Cond(Node):
    kind: Literal["cond"] = "cond"
    cond: "Expr"
    then: "Expr"
    orelse: "Expr"


class Repeat(Node):
    kind: Literal["repeat"] = "repeat"
    count: "Expr"
    var: Optional[str] = None
    names: Optional[str] = None     # a name template for the iterations: "denselayer{i+1}"
    stages: list["Expr"]


class Pipe(Node):
    kind: Literal["pipe"] = "pipe"
    head: "Expr"
    stages: list["Expr"]


Expr = Annotated[
    Union[Num, Str, Bool, Name, Ellipsis, ListExpr, Call, Attr, Index, BinOp, Compare, BoolOp, Not, Neg, Cond,
          Repeat, Pipe],
    Field(discriminator="kind"),
]


# -- statements -------------------------------------------------------------------------------
class Input(Node):
    kind: Literal["input"] = "input"
    name: str
    name_span: Span
    shape: list[Expr]
    dtype: Optional[str] = None
    acted_by: list[str] = []            # groups acting on this input's axes (`acted by S`)
    acted_span: Optional[Span] = None


class InitEntry(Node):
    """`key: rule` in an init clause: the key names a parameter (`weight`), an op kind and a parameter
    (`linear.weight`, `conv2d.*`, `*.bias`); the rule is an expression (`normal(0, 1 / sqrt(fan_in))`)."""

    key: list[str]
    key_span: Span
    rule: Expr


class InitClause(Node):
    entries: list[InitEntry]


class SparsityClause(Node):
    """`sparsity rule` after a binding: how the weights of the layers it creates are stored."""

    rule: Expr


class Bind(Node):
    kind: Literal["bind"] = "bind"
    targets: list[str]
    target_spans: list[Span]
    value: Expr
    init: Optional[InitClause] = None      # for the layers this binding creates
    sparsity: Optional[SparsityClause] = None


class OutputItem(Node):
    name: Optional[str] = None
    value: Expr
    init: Optional[InitClause] = None
    sparsity: Optional[SparsityClause] = None


class Output(Node):
    kind: Literal["output"] = "output"
    items: list[OutputItem]


class Ensure(Node):
    kind: Literal["ensure"] = "ensure"
    expr: Expr
    claim: Optional[str] = None         # `ensure y invariant under S`: "invariant" or "equivariant"
    group: Optional[str] = None
    group_span: Optional[Span] = None


class If(Node):
    kind: Literal["if"] = "if"
    cond: Expr
    then: list["Stmt"]
    orelse: Optional[list["Stmt"]] = None


class InitStmt(Node):
    """`init { ... }` as a statement: rules for every layer of the block (and the blocks it calls)."""

    kind: Literal["init"] = "init"
    entries: list[InitEntry]


class SparsityStmt(Node):
    """`sparsity { ... }` as a statement: storage rules by op kind and parameter for the whole block
    (and the blocks it calls); keys as in `init { ... }`."""

    kind: Literal["sparsity"] = "sparsity"
    entries: list[InitEntry]


class Parametrization(Node):
    """`parametrization mup(base_width=128)`: how init, multipliers and learning rates scale with width."""

    kind: Literal["parametrization"] = "parametrization"
    rule: Expr


Stmt = Annotated[Union[Input, Bind, Output, Ensure, If, InitStmt, SparsityStmt, Parametrization],
                 Field(discriminator="kind")]


# -- top level --------------------------------------------------------------------------------
class Param(Node):
    name: str
    type: str
    type_span: Span
    default: Optional[Expr] = None


class Import(Node):
    kind: Literal["import"] = "import"
    path: Optional[str] = None        # a quoted file path, relative to the importing file
    module: Optional[str] = None      # a dotted standard-library module name
    alias: Optional[str] = None


class BlockDef(Node):
    kind: Literal["block"] = "block"
    is_model: bool = False
    name: str
    name_span: Span
    params: list[Param]
    body: list[Stmt]


class ActDef(Node):
    """`act swishy(x) = x * sigmoid(1.702 * x)`: an elementwise function of one tensor and numbers."""

    kind: Literal["act"] = "act"
    name: str
    name_span: Span
    arg: str
    params: list[Param] = []
    body: Expr


class GroupDef(Node):
    """`group S = perm(N)`: a group and the axis it acts on, named by a dim."""

    kind: Literal["group"] = "group"
    name: str
    name_span: Span
    value: Expr


Item = Annotated[Union[Import, BlockDef, ActDef, GroupDef], Field(discriminator="kind")]


class Module(BaseModel):
    model_config = ConfigDict(defer_build=True)

    file: str
    items: list[Item]


# Forward references (recursive expressions) resolve when a model is first validated (defer_build).
