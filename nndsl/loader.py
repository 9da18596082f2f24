"""Load a `.nn` file with its imports: parse each file once, resolve imports (stdlib names and paths
relative to the importing file), detect cycles, and collect the block namespace."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from .diagnostics import Abort, Label, Sink, Span
from .resources import stdlib_dir
from .syntax import ast as A
from .syntax import parse_text
from .syntax.parser import parse_recovering

MAX_IMPORT_DEPTH = 32
MAX_FILE_BYTES = 8 * 1024 * 1024


@dataclass
class Program:
    root: str
    sources: dict[str, str] = field(default_factory=dict)
    modules: dict[str, A.Module] = field(default_factory=dict)
    # name -> (BlockDef, file); names from `import x as y` are qualified "y.Block"
    blocks: dict[str, A.BlockDef] = field(default_factory=dict)
    local_models: list[A.BlockDef] = field(default_factory=list)
    scopes: dict[str, dict[str, A.BlockDef]] = field(default_factory=dict)  # file -> names visible there


_PARSED: dict[tuple[str, str], A.Module] = {}


def _parse_cached(text: str, file: str) -> A.Module:
    """ASTs are immutable, so a file parsed once in this process (the standard library, a spec an
    editor re-checks) is reused while its text is unchanged."""
    if len(text) > 64 * 1024:  # large (often generated) specs are not worth keeping alive
        return parse_text(text, file)
    key = (file, text)
    mod = _PARSED.get(key)
    if mod is None:
        mod = parse_text(text, file)
        if len(_PARSED) >= 64:
            _PARSED.clear()
        _PARSED[key] = mod
    return mod


def stdlib_modules() -> list[str]:
    return sorted(p.stem for p in stdlib_dir().glob("*.nn"))


class Loader:
    def __init__(self, sink: Sink):
        self.sink = sink
        self.prog: Program | None = None
        self._ns_cache: dict[str, dict[str, A.BlockDef]] = {}

    def load_text(self, text: str, file: str) -> Program:
        self.prog = Program(root=file)
        self._load(file, text, stack=[], span=None)
        return self.prog

    def load_path(self, path: str | Path) -> Program:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            self.prog = Program(root=str(path))
            self.sink.error("E0108", f"cannot read `{path}`: {getattr(e, 'strerror', None) or e}")
            return self.prog
        return self.load_text(text, str(path))

    def _load(self, file: str, text: str, stack: list[str], span: Span | None) -> dict[str, A.BlockDef]:
        """Parse `file` and its imports; returns the blocks it defines (not what it imports)."""
        assert self.prog is not None
        key = str(Path(file).resolve()) if not file.startswith("<") else file
        if key in self._ns_cache:
            return self._ns_cache[key]
        if len(stack) > MAX_IMPORT_DEPTH:
            self.sink.error("E0112", f"imports nested more than {MAX_IMPORT_DEPTH} deep", span)
            return {}
        if len(text) > MAX_FILE_BYTES:
            self.sink.error("E0112", f"`{file}` is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB", span)
            return {}
        self.prog.sources[file] = text
        try:
            mod = _parse_cached(text, file)
        except Abort:
            for d in parse_recovering(text, file)[1]:  # every independent syntax error, not just the first
                self.sink.add(d)
            self._ns_cache[key] = {}
            return {}
        self.prog.modules[file] = mod
        own: dict[str, A.BlockDef] = {}
        visible: dict[str, A.BlockDef] = {}
        is_root = not stack
        for item in mod.items:
            if isinstance(item, A.Import):
                target = self._resolve(item, file)
                if target is None:
                    continue
                tkey = str(Path(target).resolve())
                if tkey in [str(Path(s).resolve()) for s in stack + [file] if not s.startswith("<")]:
                    chain = " -> ".join(Path(s).name for s in stack + [file, target])
                    self.sink.error("E0109", f"import cycle: {chain}", item.span, label="this import closes the cycle",
                                    help="move the shared blocks into a file that both import")
                    continue
                try:
                    ttext = Path(target).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as e:
                    self.sink.error("E0108", f"cannot read `{target}`: {e}", item.span)
                    continue
                sub = self._load(target, ttext, stack + [file], item.span)
                for name, bd in sub.items():
                    qual = f"{item.alias}.{name}" if item.alias else name
                    self._define(visible, qual, bd, item.span)
        for item in mod.items:
            if isinstance(item, A.BlockDef):
                if item.name in own:
                    prev = own[item.name]
                    self.sink.error("E0105", f"`{item.name}` is defined twice", item.name_span,
                                    label="second definition",
                                    secondary=[Label(span=prev.name_span, message="first defined here")])
                    continue
                own[item.name] = item
                self._define(visible, item.name, item, item.name_span)
                if is_root and item.is_model:
                    self.prog.local_models.append(item)
        self._ns_cache[key] = own
        if is_root:
            self.prog.blocks = visible
        self.prog.scopes[file] = visible
        return own

    def _define(self, ns: dict, name: str, bd: A.BlockDef, span: Span | None) -> None:
        if name in ns and ns[name] is not bd:
            prev = ns[name]
            self.sink.error("E0105", f"`{name}` is defined twice", span,
                            label="this definition clashes",
                            secondary=[Label(span=prev.name_span, message="first defined here")],
                            help="import one of them with `as` to qualify its names")
            return
        ns[name] = bd

    def _resolve(self, item: A.Import, file: str) -> str | None:
        if item.path is not None:
            base = Path(file).parent if not file.startswith("<") else Path.cwd()
            target = (base / item.path)
            if target.suffix != ".nn" and not target.exists():
                target = target.with_suffix(".nn")
            if not target.is_file():
                self.sink.error("E0108", f"cannot find `{item.path}`", item.span,
                                label=f"looked for {target}", help="paths are relative to the importing file")
                return None
            return str(target)
        name = item.module or ""
        target = stdlib_dir() / (name.replace(".", "/") + ".nn")
        if not target.is_file():
            cands = difflib.get_close_matches(name, stdlib_modules(), n=1)
            self.sink.error("E0108", f"no standard-library module named `{name}`", item.span,
                            label="not found",
                            help=(f"did you mean `{cands[0]}`?" if cands else
                                  f"the standard library has: {', '.join(stdlib_modules())}"))
            return None
        return str(target)
