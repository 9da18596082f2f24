"""The catalogue of diagnostic codes. `nndsl explain CODE` prints the long text; docs/errors.md
is generated from this table (tests check that they agree)."""
from __future__ import annotations

from typing import NamedTuple


class Code(NamedTuple):
    title: str
    text: str


CODES: dict[str, Code] = {
    # -- syntax ---------------------------------------------------------------------------------
    "E0001": Code("syntax error", """\
The parser met a token it did not expect. The message says what it found and what could have come
instead. Common causes: a missing `)` or `]`, two statements on one line without `;`, or a keyword
(`block`, `model`, `input`, `output`, `ensure`, `if`, `repeat`, ...) used as a name.

    conv = conv2d(x 64)        # error: expected `,` or `)` after `x`
    conv = conv2d(x, 64)       # ok"""),
    "E0002": Code("unexpected end of file", """\
The file ended while a construct was still open: usually a `{` of a block, model or `if` that was
never closed, or an unfinished expression. The diagnostic points at the end of the file."""),
    "E0003": Code("unexpected character", """\
The lexer met a character that starts no token of `.nn`: for example `$`, a backtick, or a string
that is never closed. Comments start with `#`; strings use double quotes."""),
    "E0004": Code("invalid literal", """\
A number or string literal cannot be read: an integer beyond 2**62 (nndsl's largest), a malformed
number, or a string escape that is unknown (`\\q`), incomplete (`\\x4`, `\\u12`) or names no
character (`\\N{nope}`). Escapes are `\\\\`, `\\"`, `\\n`, `\\t`, `\\r`, `\\xHH`, `\\uHHHH`,
`\\UHHHHHHHH` and `\\N{name}`. A float literal too large for a float is infinity (`1e999`)."""),
    # -- names and structure -------------------------------------------------------------------
    "E0101": Code("unknown name", """\
A name was used that is not a parameter, a dim, a binding or an input in scope. Bindings are visible
only after the statement that defines them, and only inside their own block. The diagnostic suggests
the closest name in scope."""),
    "E0102": Code("unknown operation or block", """\
A call names neither a built-in operation nor a block defined in this file or imported. Check the
spelling (a suggestion is given), or add `import <module>` for a standard-library block."""),
    "E0103": Code("unknown keyword argument", """\
A keyword argument is not an attribute of the operation or a parameter of the block. The valid
keywords are listed in the note."""),
    "E0104": Code("wrong number of arguments", """\
An operation or block received more or fewer positional arguments than its signature allows.
Tensor inputs come first, then attributes; attributes may also be given by keyword."""),
    "E0105": Code("duplicate definition", """\
A block, model, parameter, input or binding is defined twice in the same scope. Every binding names
a layer (its parameters appear under that name in the state dict), so each name may be bound once;
choose a new name for the second definition."""),
    "E0106": Code("wrong argument type", """\
An argument has the wrong kind of value: a tensor where an integer is expected, a string where a
bool is expected, and so on. The note gives the expected type."""),
    "E0107": Code("missing argument", """\
A required attribute of an operation or parameter of a block has no value and no default."""),
    "E0108": Code("import not found", """\
An `import` names a standard-library module or a file that does not exist. Paths in quotes are
relative to the importing file; bare names refer to the standard library in stdlib_blocks/."""),
    "E0109": Code("import cycle", """\
Files import each other in a cycle. Move the shared blocks into a third file that both import."""),
    "E0110": Code("no such model", """\
The requested model (`-m NAME` or `model=`) is not defined, or the file defines several models and
none was chosen, or defines none at all."""),
    "E0111": Code("invalid attribute value", """\
An attribute has a value of the right type but outside what the operation accepts: a zero kernel
size, a negative stride, a dropout probability above 1, channels not divisible by groups, an unknown
activation name, and the like."""),
    "E0112": Code("limit exceeded", """\
A spec asks for more than nndsl will build: too many repetitions, nodes, nested block
instantiations, import depth, nesting of brackets, or a dim size beyond 2**40. The limits keep a
bad spec from hanging the checker or exhausting memory; the message names the limit."""),
    "E0113": Code("unpacking mismatch", """\
The number of names on the left of `a, b = ...` differs from the number of values on the right,
or a value with several outputs is used where a single tensor is expected."""),
    "E0114": Code("invalid weight tying", """\
`tie=` must name an earlier binding that owns a parameter of the same name and the same shape.
Tied parameters are stored once and counted once."""),
    "E0115": Code("condition not known at compile time", """\
`if` conditions, `repeat` counts and loop bounds must be known when the spec is elaborated: they may
use parameters and literals, not dims that are bound only by input shapes or tensors."""),
    "E0116": Code("recursive block", """\
A block instantiates itself, directly or through other blocks. Blocks are unrolled at compile time,
so recursion would never end; use `repeat` instead."""),
    "E0117": Code("name reserved by PyTorch", """\
A binding that becomes a layer (it owns parameters or a module) or a block instance is named after an
attribute of `torch.nn.Module` (`training`, `forward`, `parameters`, `to`, `eval`, ...). PyTorch
cannot register a submodule under such a name: the compiled module would break. Rename the binding;
other bindings (activations, arithmetic) may use any name."""),
    "E0118": Code("buffer not known when the module is built", """\
`buffer(x)` computes `x` once, when the module is built, and stores it under the binding's name (a
registered buffer, e.g. Swin's `relative_position_index`). So `x` may depend only on values known
then: `arange`, numbers, and parameter-free ops of them, in the same block. It cannot depend on an
input, a parameter, `positions` of an input, or a random op (dropout).

    index = arange(M * M) // M                   # ok: known when the module is built
    relative_position_index = buffer(index)
    bad = buffer(x * 2)                          # error: x is an input"""),
    "E0119": Code("invalid activation definition", """\
`act name(x, p: float = 1.0) = expr` defines an elementwise activation. Its body may use its argument,
its parameters, numbers, `+ - * /`, and functions of one argument: exp, log, sqrt, abs, sin, cos, erf,
the built-in activations (relu, gelu, tanh, sigmoid, silu, softplus, mish, ...) and earlier acts. Its
parameters are numbers, given when it is called (`swish(h, beta=2)`).

    act swishy(x) = x * sigmoid(1.702 * x)         # ok
    act bad(x) = x[0]                              # error: not elementwise
    h = linear(x, D) |> swishy                     # used like any activation"""),
    # -- shapes ----------------------------------------------------------------------------------
    "E0201": Code("shape mismatch", """\
Two tensors that must agree in shape do not: the operands of an elementwise operation that cannot
be broadcast, the inputs of `matmul`, `concat` along other axes, or an argument against a block's
declared input shape. Both shapes are shown with where each came from."""),
    "E0202": Code("rank mismatch", """\
An operation received a tensor with the wrong number of axes, e.g. `conv2d` on a 3-d tensor.
The expected layout is given in the note."""),
    "E0203": Code("unbound dim", """\
A parameter shape or an attribute depends on a dim that stays free (symbolic) until run time, e.g.
`linear` on an axis of size `H*W` when H and W are free. Bind the dim in the input declaration, pass
`--dim H=32`, or restructure so parameter shapes only depend on parameters."""),
    "E0204": Code("conflicting dim", """\
A dim is bound to two different sizes: for instance a block declares `input x: [B, C, H, H]` and
receives a non-square image, or one input says `T` is 128 and another 64."""),
    "E0205": Code("divisibility failed", """\
A size must be divisible by another and is not, or cannot be proved to be: a rearrange group
`(h d)` whose axis is not a multiple of `h`, channels not divisible by groups or heads. For
symbolic sizes, state the fact with `ensure D % heads == 0`."""),
    "E0206": Code("ensure failed", """\
An `ensure` statement evaluated to false. The values of both sides are shown."""),
    "E0207": Code("invalid pattern", """\
A `rearrange` or `einsum` pattern is malformed: an axis appears twice, an axis on one side is
missing on the other, parentheses are unbalanced, or the number of axes differs from the rank.
Where the pattern is written as a string literal in the call, the caret stands under the characters
at fault (the unclosed `(`, the repeated axis, the second `->`)."""),
    "E0208": Code("dtype mismatch", """\
An operation received a tensor of the wrong element type: `embedding` needs integer indices,
arithmetic needs floating-point tensors."""),
    "E0209": Code("unknown axis", """\
A reduction or other axis argument names an axis the tensor does not have, or gives an index
outside its rank. Axes are named by the input declaration (`input x: [B, C, H, W]`) and keep their
names through shape-preserving operations."""),
    # -- validation ------------------------------------------------------------------------------
    "W0301": Code("unused input", """\
An input is declared but no operation consumes it. Remove it, or use it."""),
    "W0302": Code("unused binding", """\
A binding is computed but neither used nor returned. Its layer (and its parameters) is still built;
remove it if it is not needed."""),
    "E0303": Code("missing output", """\
A block or model has no `output` statement, or an output names nothing."""),
    "E0304": Code("missing lowering", """\
An operation has no PyTorch lowering for the attributes given. This is a limitation of the backend;
the message names the op."""),
    "E0305": Code("invalid dimension binding", """\
A `--dim NAME=VALUE` (or a keyword passed to `nndsl.load`) names neither a parameter of the model
nor a free dim of its inputs, or its value cannot be read as the parameter's type."""),
    # -- the command's own files -----------------------------------------------------------------
    "E0401": Code("cannot write the output", """\
`nndsl compile -o` or `nndsl draw -o` could not write its output: the directory does not exist, the
path is a directory, or it is not writable. Outputs are written to a temporary file and renamed into
place, so a failed write leaves nothing behind."""),
    "E0402": Code("unknown output format", """\
`nndsl draw` chooses the format from the output's extension: `.svg`, `.png`, `.pdf`, or `.dot`
(Graphviz source, which needs no Graphviz installed)."""),
    "E0403": Code("renderer unavailable", """\
Rendering a diagram to SVG, PNG or PDF needs Graphviz's `dot` (`apt-get install graphviz`). A `.dot`
output still works without it."""),
    "E0404": Code("cannot use the calibration batch", """\
`nndsl lsuv --batch FILE` reads a `.npy` array (without pickles) or a `.pt` file holding a tensor, or a
list or tuple of tensors for a model with several inputs (loaded with `weights_only=True`: a checkpoint
cannot run code). The batch must fit the model's inputs: their number, rank and dtype."""),
    "E0405": Code("cannot load a dense checkpoint", """\
`nndsl project --weights` could not use the file: it must be a `.pt` state dict (names -> tensors, read
without unpickling code) of the same network with dense weights: every structured layer's `weight`
present with its dense shape, every other entry matching the model."""),
    "E0406": Code("cannot export", """\
`nndsl export` could not export the model: the exporter (torch.export, or torch.onnx and then
`onnx.checker` with strict shape inference) refused it, the packages are missing (`pip install onnx
onnxruntime onnxscript`), or the model would not fit in memory. The message gives the exporter's reason.
Frame averages over PCA frames cannot go to ONNX (it has no eigendecomposition operator); torch.export
takes them."""),
    # -- initialization ---------------------------------------------------------------------------
    "E0501": Code("unknown init rule", """\
An init entry (`key: rule`) names no rule, or its value is not a rule name or a call. Rules are
listed in docs/init.md (`zeros`, `normal(mean, std)`, `xavier_uniform(gain)`, `kaiming_normal(a,
mode, nonlinearity)`, `orthogonal(gain)`, `identity(gain, groups)`, ...); the diagnostic suggests the
closest name."""),
    "E0502": Code("invalid init rule arguments", """\
The arguments of an init rule do not bind: too many, a missing required one, an unknown keyword, or a
value of the wrong type (`mode` and `nonlinearity` are strings, the others numbers). Arguments may use
`fan_in`, `fan_out`, `numel`, the block's parameters, `sqrt(...)` and `gain("relu")`.

    weight: normal(0, 1 / sqrt(fan_in))          # ok
    weight: kaiming_normal(nonlinearity=relu)    # error: `relu` is not a name here; write "relu"
"""),
    "E0503": Code("init rule does not fit the parameter", """\
The rule cannot initialise a parameter of this shape: `orthogonal` needs at least a matrix,
`identity` a matrix or a convolution kernel (with the output channels divisible by `groups`), and
distribution arguments must make sense (`std` at least 0, `a` below `b`). The message names the
parameter and its shape."""),
    "E0504": Code("invalid parametrization", """\
A `parametrization` statement is wrong: an unknown kind (sp, ntk, mf, mup), an argument the kind does not
take, `mup` without a positive integer `base_width`, a `width` that names no int parameter of the model,
a model that does not check at its base width, a second parametrization, or one inside a block (it is for
a whole model).

    parametrization mup(base_width=128, width="D")   # ok
"""),
    "W0501": Code("init key matches nothing", """\
An init entry names no parameter it could apply to: the statement's layers (or the block's) have no
parameter of that name or op kind. Parameters are called as in the state dict (`weight`, `bias`,
`in_proj_weight`, ...); a free `param(...)`'s own value is keyed `value`."""),
    # -- sparsity and structured weights (docs/sparsity.md) ---------------------------------------
    "E0701": Code("invalid sparsity rule", """\
A `sparsity` (or `structure`) rule is not one nndsl knows, or its arguments are wrong: an unknown rule
name, a missing or unknown argument, a string where a number belongs, or an argument that depends on a
free dim. Rules: random, erk, magnitude, mask, nm, block, monarch, lowrank, frozen.

    h = linear(x, 1024) sparsity monarch(blocks=4)     # ok
    h = linear(x, 1024) sparsity monarch(block=4)      # error: no argument `block`"""),
    "E0702": Code("structure does not fit the weight", """\
The rule cannot structure this weight: `nm(n, m)` where the input size is not a multiple of m, blocks
that do not divide the weight, a Monarch block count whose blocks do not divide the sizes (or whose
inner block size is not a multiple of the count), a rank no smaller than dense, a density above 1, a
linear-only rule (block, monarch) on a conv, a tied weight, or a parameter that is not the weight of a
linear or conv layer."""),
    "E0703": Code("a layer pruned to nothing", """\
The declared density keeps no weight of the layer (density 0, or too small a density for the layer's
size, or a mask file of zeros). Its output would not depend on its input: the signal dies there and no
gradient reaches the layers before it. Raise the density."""),
    "E0704": Code("unreadable mask file", """\
A mask or block-layout file named by `mask(file)` or `block(size, layout=file)` cannot be used: it must
be a relative `.npy` path under the spec's directory (no `..`), readable without pickles, of the
weight's shape (the block grid's for a layout), holding only 0 and 1, and within the size limit."""),
    "W0701": Code("sparsity key matches nothing", """\
A sparsity entry names no weight it could apply to: the statement's layers (or the block's) have no
linear or conv layer of that name or op kind."""),
    # -- symmetry (docs/symmetry.md) ----------------------------------------------------------------
    "E0801": Code("invalid group or action", """\
A `group` definition, an `acted by` annotation, a symmetry claim, a `group=` argument or a
`frame_average` names a group that does not exist, defines one nndsl does not know (a product of
`perm(N)`, `cyclic(N)`, `dihedral(N)`, `c4(S)`/`c4(H, W)`, `d4(...)`, `o3(D)`, `so3(D)`, `e3(D)`), names
axes the input does not have (a grid group needs both axes of a square grid; a coordinate group an axis
of known size), annotates a block's input (groups act on a model's inputs; blocks carry the action
they are given), averages over a group with no finite or coordinate factor (perm(N) has N! elements), or
asks an equivariant frame average of a block whose output lacks the acted axes.

    group G = perm(N) * o3(D)
    model M(D: int = 3) { input points: [B, N, D] acted by G ... }     # ok"""),
    "E0802": Code("symmetry claim refuted", """\
`ensure y invariant under G` (or `equivariant`) is false, and the checker says where: the first
operation that breaks the action of one factor of G (a `linear` or parameter that weights positions of
the acted axis differently, a window or slice over it, an index, a tensor that varies along it without
being acted on; a convolution with a free kernel under a grid rotation; a nonlinear map of rotated
coordinates), or, for `invariant`, that the tensor still has an acted axis. The note names the op and
the help says what would keep the symmetry (contract features, not positions; `gconv2d` for grids;
`frame_average` for coordinates; reduce the axis with sum, mean or max)."""),
    "W0801": Code("symmetry claim not proved", """\
The checker could neither prove nor refute a symmetry claim: an operation it has no rule for reshapes,
merges or splits the acted axis, a strided window samples a grid symmetrically only for some sizes
(`ensure S % 2 == 0` decides it), or translations act (E(n) claims are proved through `frame_average`).
The claim may still hold; nothing is claimed for it."""),
    # -- signal propagation (`nndsl check --signal`, `nndsl summary`) ------------------------------
    "W0601": Code("signal explodes or vanishes", """\
The predicted second moment of a pre-activation (the input of an activation) or of a model output,
E[h²] at init with unit-variance inputs, leaves [1e-2, 1e2]. The warning names the first such layer.
Deep stacks amplify it: gradients explode or vanish with it. Scale the layer's init so the variance
map holds q near 1 (`variance_preserving(act=...)`, `kaiming_normal(nonlinearity="relu")`), scale the
residual branches down, or normalise."""),
    "W0602": Code("Xavier init feeding a ReLU", """\
A layer initialised with `xavier_uniform`/`xavier_normal` (gain below √2) feeds a ReLU. Xavier keeps
the variance through a linear map; the ReLU halves the second moment, so the signal shrinks by 2x per
layer. Use `kaiming_normal(nonlinearity="relu")`, `variance_preserving(act="relu")`, or give Xavier
`gain=gain("relu")`."""),
    "W0603": Code("unclipped sparsity-inducing activation", """\
`shifted_relu` (max(0, x − tau)) and `soft_threshold` without `clip=` have no stable fixed point of
the variance map at init: the gradient factor E[φ'²]/E[φ²] exceeds 1 for any weight scale that keeps
the variance, so deep stacks turn chaotic. Capping the output fixes it; the hint gives the largest clip
for which the factor is at most 1 at the predicted variance of that layer."""),
    "W0604": Code("μP readout not scaled", """\
Under `parametrization mup(...)` the readout (a dense layer whose output reaches a model output through
no other dense layer) must start at zero or have its input scaled by 1/width; the pass scales it itself,
unless it cannot: a readout tied to an embedding (`tie=`) shares that table's init. Its output then grows
with width. Initialise it with `zeros`, or untie it."""),
    # -- internal --------------------------------------------------------------------------------
    "E9999": Code("internal compiler error", """\
nndsl failed on this input: that is a bug in nndsl, not in the spec. Please report it with the
spec that triggered it."""),
}


def explain(code: str) -> str | None:
    entry = CODES.get(code.upper())
    if entry is None:
        return None
    return f"{code.upper()}: {entry.title}\n\n{entry.text}\n"


def errors_markdown() -> str:
    out = ["# Diagnostic codes", "", "Every diagnostic nndsl emits has one of these codes. "
           "`nndsl explain CODE` prints the same text.", ""]
    out += [JSON_DOC, ""]
    for code, entry in CODES.items():
        out += [f"## {code}: {entry.title}", "", entry.text, ""]
    return "\n".join(out)


JSON_DOC = """\
## JSON output

`nndsl check --format json FILE...` prints one object, whatever the number of files:

```json
{
  "version": 1,
  "ok": false,
  "files": [
    {"file": "model.nn", "ok": true, "model": "M", "params": 269322, "diagnostics": [], "omitted": {"errors": 0, "warnings": 0}},
    {"file": "missing.nn", "ok": false, "model": null, "diagnostics": [{"code": "E0108", "...": "..."}],
     "omitted": {"errors": 0, "warnings": 0}}
  ]
}
```

A file that cannot be read is an entry with its diagnostic (E0108), and the files after it are still
checked. `params` is present when the file checks. Each diagnostic is:

| field | meaning |
| --- | --- |
| `code`, `severity`, `message` | `E0201`, `error` / `warning`, one line |
| `span` | `{file, line, col, end_line, end_col}` (1-based, `end_col` exclusive), or null for the command's own files |
| `label` | the text under the primary span |
| `labels` | secondary spans, each `{span, message}` |
| `notes`, `help` | further lines, and a suggestion (or null) |
| `call_sites` | for a diagnostic raised inside a block: `{block, span}` per level, innermost first; the last is in the checked file |

Exit codes: 0 when every file checks, 1 when one has errors, 2 for a wrong command line."""
