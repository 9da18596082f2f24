"""`nndsl lsp`: a language server over stdio (pygls) with what `nndsl check` knows.

- Diagnostics on open, change and save: every one `nndsl check` reports for the file (each model it
  defines), with its code, a link to `nndsl explain CODE` (`codeDescription`, and the `nndsl.explain`
  command), secondary labels and call sites as related locations, notes and the help in the message. A
  diagnostic inside an imported block is shown at the call in this file.
- Hover: a binding's tensor type with its named axes, parameters and FLOPs (for a block's binding, in its
  first instance); an op's signature and doc; a block's parameters, inputs and outputs.
- Go to definition: bindings and inputs of the enclosing block, blocks (across imports and the standard
  library), groups and acts.
- Completion: ops, blocks in scope, keywords, the bindings of the enclosing block, and the keyword
  arguments of the op or block whose call the cursor is in.
- Document symbols (blocks, models, their inputs and bindings; imports, groups, acts) and formatting
  (`nndsl fmt`).

Each change re-checks the document; parses of unchanged files (the standard library, imports) are reused,
so a keystroke on GPT-2 small answers in tens of milliseconds (benchmarks/lsp.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

KEYWORDS = ("model", "block", "input", "output", "ensure", "import", "as", "if", "else", "then", "repeat", "init",
            "sparsity", "structure", "parametrization", "group", "acted", "by", "invariant", "equivariant", "under",
            "act", "true", "false", "and", "or", "not", "frame_average")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Analysis:
    path: str
    text: str
    prog: object = None                  # loader.Program (None when the file does not load)
    module: object = None                # its AST
    results: dict = field(default_factory=dict)   # model name -> CheckResult
    diagnostics: list = field(default_factory=list)


def analyse(text: str, path: str) -> Analysis:
    """Load the file (parse, imports) and check every model it defines."""
    from .compiler import check
    from .diagnostics import Sink
    from .limits import DEFAULT
    from .loader import Loader

    a = Analysis(path, text)
    sink = Sink(DEFAULT)
    try:
        a.prog = Loader(sink, DEFAULT).load_text(text, path)
        a.module = a.prog.modules.get(path)
    except Exception:                     # noqa: BLE001 - what check reports below says why
        a.prog = None
    seen = set()

    def add(ds):
        for d in ds:
            key = (d.code, d.message, str(d.span))
            if key not in seen:
                seen.add(key)
                a.diagnostics.append(d)

    add(sink.sorted())
    models = [m.name for m in a.prog.local_models] if a.prog is not None and not sink.has_errors else []
    for name in models:                   # a file of blocks only reports what loading it found
        res = check(source=text, filename=path, model=name)
        a.results[name] = res
        add(res.diagnostics)
    return a


# -- positions ----------------------------------------------------------------------------------------
def word_at(text: str, line: int, col: int) -> tuple[str, int] | None:
    """The identifier under (line, col) (0-based) and its start column, or None."""
    lines = text.split("\n")
    if not 0 <= line < len(lines):
        return None
    for m in _WORD.finditer(lines[line]):
        if m.start() <= col <= m.end():
            return m.group(0), m.start()
    return None


def _contains(span, line1: int) -> bool:
    return span is not None and span.line <= line1 <= span.end_line


def enclosing(a: Analysis, line: int):
    """The block or model definition around a 0-based line."""
    if a.module is None:
        return None
    for it in a.module.items:
        if it.kind == "block" and _contains(it.span, line + 1):
            return it
    return None


def _stmts(body):
    for s in body:
        yield s
        if s.kind == "if":
            yield from _stmts(s.then)
            yield from _stmts(s.orelse or [])


def _defined(bd, name: str):
    """The statement that defines `name` in a block: its input or first binding."""
    for s in _stmts(bd.body):
        if s.kind == "input" and s.name == name:
            return s.name_span
        if s.kind == "bind" and name in s.targets:
            return s.target_spans[s.targets.index(name)]
        if s.kind == "output":
            for item in s.items:
                if item.name == name:
                    return item.span
    return None


def _blocks(a: Analysis) -> dict:
    if a.prog is None:
        return {}
    return a.prog.scopes.get(a.path, a.prog.blocks)


# -- features -----------------------------------------------------------------------------------------
def hover(a: Analysis, line: int, col: int) -> str | None:
    from . import ops as O

    w = word_at(a.text, line, col)
    if w is None:
        return None
    word, start = w
    rest = a.text.split("\n")[line][start + len(word):]
    calls = rest.lstrip().startswith("(")
    blocks = _blocks(a)
    if word in blocks and (calls or blocks[word].name_span.line == line + 1):
        return _block_doc(blocks[word])
    od = O.get(word)
    if od is not None and calls:
        return _op_doc(od)
    bd = enclosing(a, line)
    if bd is not None and _defined(bd, word) is not None:
        return _binding_doc(a, bd, word)
    if od is not None:
        return _op_doc(od)
    if word in blocks:
        return _block_doc(blocks[word])
    return None


def _op_doc(od) -> str:
    args = list(od.inputs) + [f"{x.name}: {x.type}" + ("" if x.required else f" = {x.default!r}") for x in od.attrs]
    return f"```nn\n{od.name}({', '.join(args)})\n```\n\n{od.doc}"


def _block_doc(bd) -> str:
    from .syntax.unparse import expr

    params = ", ".join(f"{p.name}: {p.type}" + (f" = {expr(p.default)}" if p.default else "") for p in bd.params)
    lines = [f"{'model' if bd.is_model else 'block'} {bd.name}({params})"]
    for s in bd.body:
        if s.kind == "input":
            lines.append(f"  input {s.name}: [{', '.join(expr(d) for d in s.shape)}]" + (f" {s.dtype}" if s.dtype else ""))
        if s.kind == "output":
            lines.append("  output " + ", ".join(i.name or expr(i.value) for i in s.items))
    return "```nn\n" + "\n".join(lines) + "\n```\n\n" + f"defined in `{Path(bd.span.file).name}`:{bd.span.line}"


def _binding_doc(a: Analysis, bd, name: str) -> str:
    from .backends.summary import fmt_count

    hits = []
    for res in a.results.values():
        ir = res.ir
        if ir is None:
            continue
        scopes = [p for p, inst in ir.meta.instances.items() if (inst.block == bd.name and p) or
                  (not p and bd.is_model and ir.meta.model == bd.name)]
        for p in scopes:
            nodes = [n for n in ir.nodes() if n.scope == p and n.binding == name and n.outputs]
            inst = ir.meta.instances.get(f"{p}.{name}" if p else name)
            if not nodes and inst is not None:        # a block call: its outputs, and every layer inside it
                nodes = [n for n in ir.nodes() if n.scope == inst.path or n.scope.startswith(inst.path + ".")]
                nodes = [n for n in nodes if n.outputs] + [ir.node(o) for o, _ in inst.outputs[-1:]]
            if nodes:
                hits.append((ir, p, nodes))
    if not hits:
        return f"`{name}`" + ("" if a.results else " (no model in this file checks it)")
    ir, path, nodes = hits[0]
    node = nodes[-1]
    lines = []
    for port, t in enumerate(node.outputs):
        axes = ""
        if node.axes and port < len(node.axes):
            try:
                axes = "  axes: " + ", ".join(ir.axes[i].name for i in node.axes[port])
            except (IndexError, TypeError, AttributeError):
                axes = ""
        lines.append(f"{name}: {t.describe()}{axes}")
    params = sum(p.numel for n in nodes for p in n.params if p.kind == "param" and p.tied_to is None)
    flops = [n.flops for n in nodes if n.flops is not None]
    total = sum(flops[1:], flops[0]) if flops else None
    info = [f"`{node.op}`", f"{fmt_count(params)} parameters" if params else "no parameters"]
    if total is not None:
        info.append(f"{fmt_count(total.value) if total.is_const else total} FLOPs")
    where = f"in `{path}`, one of {len(hits)} instances" if path else f"in model `{ir.meta.model}`"
    return "```\n" + "\n".join(lines) + "\n```\n\n" + " · ".join(info) + f"  ({where})"


def definition(a: Analysis, line: int, col: int):
    """The span that defines the name under the cursor, or None."""
    w = word_at(a.text, line, col)
    if w is None:
        return None
    word = w[0]
    bd = enclosing(a, line)
    if bd is not None:
        sp = _defined(bd, word)
        if sp is not None:
            return sp
    blocks = _blocks(a)
    if word in blocks:
        return blocks[word].name_span
    if a.prog is not None:
        g = a.prog.groups.get(a.path, {}).get(word)
        if g is not None:
            return g.name_span
    return None


def completions(a: Analysis, line: int, col: int) -> list[tuple[str, str, str]]:
    """(label, kind, detail) items: keyword arguments of the call around the cursor first, then bindings,
    blocks, ops and keywords."""
    from . import ops as O

    lines = a.text.split("\n")
    before = "\n".join(lines[:line] + [lines[line][:col] if line < len(lines) else ""])
    out: list[tuple[str, str, str]] = []
    callee = _open_call(before)
    blocks = _blocks(a)
    if callee is not None:
        od = O.get(callee)
        if od is not None:
            out += [(f"{x.name}=", "property", x.type) for x in od.attrs]
        elif callee in blocks:
            out += [(f"{p.name}=", "property", p.type) for p in blocks[callee].params]
    bd = enclosing(a, line)
    if bd is not None:
        for s in _stmts(bd.body):
            if s.kind == "input":
                out.append((s.name, "variable", "input"))
            elif s.kind == "bind":
                out += [(t, "variable", "binding") for t in s.targets]
        out += [(p.name, "variable", p.type) for p in bd.params]
    out += [(name, "class", "block") for name in sorted(blocks)]
    out += [(name, "function", "op") for name in O.all_names()]
    out += [(k, "keyword", "keyword") for k in KEYWORDS]
    seen, uniq = set(), []
    for item in out:
        if item[0] not in seen:
            seen.add(item[0])
            uniq.append(item)
    return uniq


def _open_call(before: str) -> str | None:
    """The name of the innermost call whose `(` is still open before the cursor."""
    depth = 0
    i = len(before) - 1
    while i >= 0:
        c = before[i]
        if c in ")]":
            depth += 1
        elif c in "([":
            if depth == 0:
                if c == "[":
                    return None
                m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", before[:i])
                return m.group(1) if m else None
            depth -= 1
        elif c in "{}" and depth == 0:
            return None
        i -= 1
    return None


def symbols(a: Analysis) -> list[tuple[str, str, object, object, list]]:
    """(name, kind, span, selection span, children) for the file's items."""
    if a.module is None:
        return []
    out = []
    for it in a.module.items:
        if it.kind == "block":
            kids = []
            for s in _stmts(it.body):
                if s.kind == "input":
                    kids.append((s.name, "field", s.span, s.name_span, []))
                elif s.kind == "bind":
                    kids += [(t, "variable", s.span, sp, []) for t, sp in zip(s.targets, s.target_spans)]
            out.append((it.name, "module" if it.is_model else "class", it.span, it.name_span, kids))
        elif it.kind == "group":
            out.append((it.name, "constant", it.span, it.name_span, []))
        elif it.kind == "act":
            out.append((it.name, "function", it.span, it.name_span, []))
        elif it.kind == "import":
            out.append((it.alias or it.module or it.path, "namespace", it.span, it.span, []))
    return out


# -- the server ---------------------------------------------------------------------------------------
def serve() -> None:
    from lsprotocol import types as T
    from pygls.lsp.server import LanguageServer
    from pygls.uris import from_fs_path, to_fs_path

    from . import __version__
    from .diagnostics import explain

    server = LanguageServer("nndsl", __version__)
    cache: dict[str, Analysis] = {}

    def rng(sp) -> "T.Range":
        if sp is None:
            return T.Range(T.Position(0, 0), T.Position(0, 1))
        return T.Range(T.Position(max(sp.line - 1, 0), max(sp.col - 1, 0)),
                       T.Position(max(sp.end_line - 1, 0), max(sp.end_col - 1, 0)))

    def loc(sp) -> "T.Location":
        return T.Location(uri=from_fs_path(sp.file) or sp.file, range=rng(sp))

    def lsp_diag(d, path: str):
        span = d.span
        related = [T.DiagnosticRelatedInformation(location=loc(x.span), message=x.message or "here")
                   for x in d.secondary if x.span is not None]
        related += [T.DiagnosticRelatedInformation(location=loc(c.span), message=f"`{c.block}` is called here")
                    for c in d.call_sites]
        msg = d.message
        if span is not None and span.file != path:            # inside an imported block: shown at the call
            here = next((c.span for c in reversed(d.call_sites) if c.span.file == path), None)
            related.insert(0, T.DiagnosticRelatedInformation(location=loc(span), message=d.label or d.message))
            msg = f"{d.message} (in `{Path(span.file).name}`:{span.line})"
            span = here
        if d.label:
            msg += f"\n{d.label}"
        msg += "".join(f"\nnote: {n}" for n in d.notes) + (f"\nhelp: {d.help}" if d.help else "")
        return T.Diagnostic(range=rng(span), message=msg, code=d.code, source="nndsl",
                            severity=T.DiagnosticSeverity.Error if d.is_error else T.DiagnosticSeverity.Warning,
                            code_description=T.CodeDescription(href=f"nndsl:explain/{d.code}"),
                            related_information=related or None)

    def refresh(uri: str) -> Analysis:
        doc = server.workspace.get_text_document(uri)
        path = to_fs_path(uri) or uri
        a = analyse(doc.source, path)
        cache[uri] = a
        server.text_document_publish_diagnostics(T.PublishDiagnosticsParams(
            uri=uri, version=doc.version, diagnostics=[lsp_diag(d, path) for d in a.diagnostics]))
        return a

    def current(uri: str) -> Analysis:
        doc = server.workspace.get_text_document(uri)
        a = cache.get(uri)
        return a if a is not None and a.text == doc.source else refresh(uri)

    @server.feature(T.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: T.DidOpenTextDocumentParams):
        refresh(params.text_document.uri)

    @server.feature(T.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: T.DidChangeTextDocumentParams):
        refresh(params.text_document.uri)

    @server.feature(T.TEXT_DOCUMENT_DID_SAVE)
    def did_save(params: T.DidSaveTextDocumentParams):
        refresh(params.text_document.uri)

    @server.feature(T.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: T.DidCloseTextDocumentParams):
        cache.pop(params.text_document.uri, None)
        server.text_document_publish_diagnostics(T.PublishDiagnosticsParams(uri=params.text_document.uri,
                                                                             diagnostics=[]))

    @server.feature(T.TEXT_DOCUMENT_HOVER)
    def on_hover(params: T.HoverParams):
        a = current(params.text_document.uri)
        text = hover(a, params.position.line, params.position.character)
        if text is None:
            return None
        return T.Hover(contents=T.MarkupContent(kind=T.MarkupKind.Markdown, value=text))

    @server.feature(T.TEXT_DOCUMENT_DEFINITION)
    def on_definition(params: T.DefinitionParams):
        a = current(params.text_document.uri)
        sp = definition(a, params.position.line, params.position.character)
        return loc(sp) if sp is not None else None

    kinds = {"property": T.CompletionItemKind.Property, "variable": T.CompletionItemKind.Variable,
             "class": T.CompletionItemKind.Class, "function": T.CompletionItemKind.Function,
             "keyword": T.CompletionItemKind.Keyword}

    @server.feature(T.TEXT_DOCUMENT_COMPLETION, T.CompletionOptions(trigger_characters=["(", ",", " "]))
    def on_completion(params: T.CompletionParams):
        a = current(params.text_document.uri)
        items = [T.CompletionItem(label=label, kind=kinds[k], detail=detail)
                 for label, k, detail in completions(a, params.position.line, params.position.character)]
        return T.CompletionList(is_incomplete=False, items=items)

    skinds = {"module": T.SymbolKind.Module, "class": T.SymbolKind.Class, "field": T.SymbolKind.Field,
              "variable": T.SymbolKind.Variable, "constant": T.SymbolKind.Constant,
              "function": T.SymbolKind.Function, "namespace": T.SymbolKind.Namespace}

    def doc_symbol(item):
        name, kind, span, sel, kids = item
        return T.DocumentSymbol(name=name, kind=skinds[kind], range=rng(span), selection_range=rng(sel),
                                children=[doc_symbol(k) for k in kids] or None)

    @server.feature(T.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def on_symbols(params: T.DocumentSymbolParams):
        return [doc_symbol(s) for s in symbols(current(params.text_document.uri))]

    @server.feature(T.TEXT_DOCUMENT_FORMATTING)
    def on_format(params: T.DocumentFormattingParams):
        from .syntax.fmt import FormatError, format_text

        doc = server.workspace.get_text_document(params.text_document.uri)
        try:
            out = format_text(doc.source, to_fs_path(params.text_document.uri) or "<lsp>")
        except FormatError:
            return None
        if out == doc.source:
            return []
        n = doc.source.count("\n")
        return [T.TextEdit(range=T.Range(T.Position(0, 0), T.Position(n + 1, 0)), new_text=out)]

    @server.command("nndsl.explain")
    def on_explain(*args):
        code = args[0] if args else ""
        code = str(code[0] if isinstance(code, list) and code else code)
        return explain(code) or f"no diagnostic code {code!r}"

    server.start_io()
