"""Every limit on the work a spec may ask for, in one place (documented in docs/language.md).

A limit is checked before the work it bounds: file size before reading, the node count of a `repeat`
or a block instantiation before unrolling it, the size of a string or list before building it, the
bytes of a model before allocating them. Each can be raised where a real user needs more: CLI flags
(`--max-nodes`, `--max-file-size`, `--max-params`, `--max-memory`) and `limits=` in the API.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Limits:
    file_bytes: int = 1 << 20          # one spec file (1 MiB); read no further than this
    total_bytes: int = 4 << 20         # all files of one check, imports included
    nodes: int = 50_000                # graph nodes after unrolling blocks and `repeat`
    block_depth: int = 64              # nested block instantiations
    import_depth: int = 32             # nested imports
    nesting: int = 96                  # nested brackets in one expression
    value_items: int = 100_000         # characters of a string, elements of a (nested) list
    dim_terms: int = 64                # terms of a symbolic size polynomial
    params: int = 1 << 40              # parameters of a model (about 1.1e12)
    syntax_errors: int = 10            # syntax errors reported before giving up on a file
    warnings: int = 50                 # warnings shown, then "and K more"
    errors: int = 100                  # errors shown, then "and K more"
    draw_nodes: int = 2_000            # boxes a dataflow diagram (`--style graph`) may have
    draw_items: int = 10_000           # ops a circuit diagram may draw (its layout is linear; Graphviz only renders)
    memory_bytes: int | None = None    # bytes `load` may allocate; None: the machine's available memory

    def with_(self, **kw) -> "Limits":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


DEFAULT = Limits()


def _proc_kb(path: str, key: str) -> int | None:
    try:
        with open(path, "rb") as f:
            for line in f.read(1 << 16).decode("ascii", "replace").splitlines():
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory() -> int:
    """Bytes a new allocation of this process can get: the machine's available memory (MemAvailable on
    Linux), and no more than what the process's address-space and data limits still leave."""
    avail = _proc_kb("/proc/meminfo", "MemAvailable:")
    if avail is None:
        try:
            import os

            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 8 << 30
    try:
        import resource

        for which, used_key in ((resource.RLIMIT_AS, "VmSize:"), (resource.RLIMIT_DATA, "VmData:")):
            soft = resource.getrlimit(which)[0]
            if soft != resource.RLIM_INFINITY:
                used = _proc_kb("/proc/self/status", used_key) or 0
                avail = min(avail, max(0, soft - used))
    except (ImportError, OSError, ValueError):
        pass
    return avail
