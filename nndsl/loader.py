"""Load a `.nn` file with its imports: parse each file once, resolve imports (stdlib names and paths
relative to the importing file), detect cycles, and collect the block namespace."""
from __future__ import annotations

import difflib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .diagnostics import Label, Sink, Span
from .limits import DEFAULT, Limits
from .resources import stdlib_dir
from .syntax import ast as A
from .syntax.parser import parse_recovering


class SourceError(Exception):
    """A spec file that cannot be read: the message says why in plain words."""


def file_span(file: str) -> Span:
    """Where a file-level diagnostic points: line 1 of the file."""
    return Span(file=file, line=1, col=1, end_line=1, end_col=2)


def read_source(path: str | Path, max_bytes: int) -> str:
    """Read a spec as UTF-8 without ever holding more than `max_bytes` + 1 bytes: the size of a regular
    file is checked before reading, and reading stops at the limit (so `/dev/zero` is refused at once).
    Opening does not block (a FIFO without a writer reads as empty). A leading BOM is dropped."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as e:
        raise SourceError(_why(e)) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise SourceError("it is a directory")
        if stat.S_ISREG(st.st_mode) and st.st_size > max_bytes:
            raise SourceError(f"it is {st.st_size:,} bytes, more than the limit of {max_bytes:,} bytes "
                              "(--max-file-size)")
        chunks, total = [], 0
        while total <= max_bytes:
            try:
                b = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            except BlockingIOError:
                break
            if not b:
                break
            chunks.append(b)
            total += len(b)
        if total > max_bytes:
            raise SourceError(f"it is larger than the limit of {max_bytes:,} bytes (--max-file-size)")
    except OSError as e:
        raise SourceError(_why(e)) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise SourceError(f"it is not UTF-8 text (byte 0x{data[e.start]:02x} at line {line})") from None
    return text[1:] if text.startswith("\ufeff") else text


def _why(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return "the path is not valid" if isinstance(e, ValueError) else str(e)


@dataclass
class Program:
    root: str
    sources: dict[str, str] = field(default_factory=dict)
    modules: dict[str, A.Module] = field(default_factory=dict)
    # name -> (BlockDef, file); names from `import x as y` are qualified "y.Block"
    blocks: dict[str, A.BlockDef] = field(default_factory=dict)
    local_models: list[A.BlockDef] = field(default_factory=list)
    scopes: dict[str, dict[str, A.BlockDef]] = field(default_factory=dict)  # file -> names visible there
    groups: dict[str, dict[str, A.GroupDef]] = field(default_factory=dict)  # file -> its `group` definitions


_PARSED: dict[tuple[str, str], A.Module] = {}


def _parse_cached(text: str, file: str, limits: Limits) -> tuple[A.Module | None, list]:
    """ASTs are immutable, so a file parsed once in this process (the standard library, a spec an
    editor re-checks) is reused while its text is unchanged."""
    key = (file, text)
    mod = _PARSED.get(key)
    if mod is not None:
        return mod, []
    mod, errs = parse_recovering(text, file, max_errors=limits.syntax_errors, max_nesting=limits.nesting)
    if mod is not None and len(text) <= 64 * 1024:  # large (often generated) specs are not worth keeping
        if len(_PARSED) >= 64:
            _PARSED.clear()
        _PARSED[key] = mod
    return mod, errs


def stdlib_modules() -> list[str]:
    return sorted(p.stem for p in stdlib_dir().glob("*.nn"))


class Loader:
    def __init__(self, sink: Sink, limits: Limits = DEFAULT, import_root: str | Path | None = None):
        self.sink = sink
        self.limits = limits
        self.prog: Program | None = None
        self._ns_cache: dict[str, dict[str, A.BlockDef]] = {}
        self._bytes = 0
        self.import_root = Path(import_root).resolve() if import_root is not None else None

    def load_text(self, text: str, file: str) -> Program:
        self.prog = Program(root=file)
        if text.startswith("\ufeff"):
            text = text[1:]
        if len(text.encode("utf-8", "surrogatepass")) > self.limits.file_bytes:
            self.sink.error("E0112", f"the spec is larger than the limit of {self.limits.file_bytes:,} bytes",
                            file_span(file), help="raise it with --max-file-size (or limits= in the API)")
            return self.prog
        self._load(file, text, stack=[], span=None)
        return self.prog

    def load_path(self, path: str | Path) -> Program:
        try:
            text = read_source(path, self.limits.file_bytes)
        except SourceError as e:
            self.prog = Program(root=str(path))
            code = "E0112" if "limit" in str(e) else "E0108"
            self.sink.error(code, f"cannot read `{path}`: {e}", file_span(str(path)))
            return self.prog
        return self.load_text(text, str(path))

    def _load(self, file: str, text: str, stack: list[str], span: Span | None) -> dict[str, A.BlockDef]:
        """Parse `file` and its imports; returns the blocks it defines (not what it imports)."""
        assert self.prog is not None
        key = str(Path(file).resolve()) if not file.startswith("<") else file
        if key in self._ns_cache:
            return self._ns_cache[key]
        if len(stack) > self.limits.import_depth:
            self.sink.error("E0112", f"imports nested more than {self.limits.import_depth} deep", span)
            return {}
        self._bytes += len(text)
        if self._bytes > self.limits.total_bytes:
            self.sink.error("E0112", f"the spec and its imports exceed {self.limits.total_bytes:,} bytes", span,
                            help="raise it with --max-file-size")
            return {}
        self.prog.sources[file] = text
        mod, errs = _parse_cached(text, file, self.limits)
        if mod is None:
            for d in errs:  # every independent syntax error, not just the first
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
                    ttext = read_source(target, self.limits.file_bytes)
                except SourceError as e:
                    self.sink.error("E0108", f"cannot read `{item.path or item.module}`: {e}", item.span)
                    continue
                sub = self._load(target, ttext, stack + [file], item.span)
                for name, bd in sub.items():
                    qual = f"{item.alias}.{name}" if item.alias else name
                    self._define(visible, qual, bd, item.span)
        for item in mod.items:
            if isinstance(item, A.GroupDef):                  # groups: a namespace of their own, per file
                groups = self.prog.groups.setdefault(file, {})
                if item.name in groups:
                    self.sink.error("E0105", f"group `{item.name}` is defined twice", item.name_span,
                                    label="second definition",
                                    secondary=[Label(span=groups[item.name].name_span, message="first defined here")])
                    continue
                groups[item.name] = item
                continue
            if isinstance(item, (A.BlockDef, A.ActDef)):      # acts share the blocks' names
                if item.name in own:
                    prev = own[item.name]
                    self.sink.error("E0105", f"`{item.name}` is defined twice", item.name_span,
                                    label="second definition",
                                    secondary=[Label(span=prev.name_span, message="first defined here")])
                    continue
                own[item.name] = item
                self._define(visible, item.name, item, item.name_span)
                if is_root and isinstance(item, A.BlockDef) and item.is_model:
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
        """The file an import names. Only `.nn` files are ever opened: a path with another extension, or
        one whose real target (after symlinks) is not a regular `.nn` file, is refused without reading
        it; with an import root, so is anything outside it."""
        try:
            return self._resolve_unchecked(item, file)
        except (OSError, ValueError):
            self.sink.error("E0108", "cannot resolve this import", item.span, label="not a usable path",
                            help="import a `.nn` file by a relative path, or a standard-library module by name")
            return None

    def _resolve_unchecked(self, item: A.Import, file: str) -> str | None:
        if item.path is not None:
            base = Path(file).parent if not file.startswith("<") else Path.cwd()
            raw = Path(item.path)
            if raw.suffix == "":
                raw = raw.with_name(raw.name + ".nn") if raw.name not in ("", ".", "..") else raw
            if raw.suffix != ".nn":
                self.sink.error("E0108", f"cannot import `{item.path}`: only `.nn` files can be imported",
                                item.span, label="not a .nn file",
                                help="imports name spec files (`import \"blocks.nn\"`) or stdlib modules")
                return None
            target = base / raw
            real = target.resolve()
            if self.import_root is not None and not _inside(real, self.import_root):
                self.sink.error("E0108", f"cannot import `{item.path}`: it is outside the import root",
                                item.span, label="outside the import root",
                                help=f"imports are confined to {self.import_root} (--import-root)")
                return None
            if real.suffix != ".nn" or not real.is_file():
                self.sink.error("E0108", f"cannot find `{item.path}`", item.span,
                                label="no such .nn file", help="paths are relative to the importing file")
                return None
            return str(target)
        name = item.module or ""
        target = stdlib_dir() / (name.replace(".", "/") + ".nn")
        if len(name) > 200 or not target.is_file():
            cands = difflib.get_close_matches(name[:200], stdlib_modules(), n=1)
            self.sink.error("E0108", f"no standard-library module named `{name[:60]}{'...' if len(name) > 60 else ''}`",
                            item.span, label="not found",
                            help=(f"did you mean `{cands[0]}`?" if cands else
                                  f"the standard library has: {', '.join(stdlib_modules())}"))
            return None
        return str(target)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False
