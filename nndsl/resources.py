"""Where the grammar and the standard library live: inside the wheel (nndsl/grammar,
nndsl/stdlib_blocks) or, in a source checkout, at the repository's top level."""
from __future__ import annotations

import functools
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for base in (_PKG / name, _PKG.parent / name):
        if base.is_dir():
            return base
    raise FileNotFoundError(f"nndsl installation is missing its {name}/ directory")


@functools.lru_cache(maxsize=None)
def grammar_path() -> Path:
    return _find("grammar") / "nndsl.lark"


@functools.lru_cache(maxsize=None)
def stdlib_dir() -> Path:
    return _find("stdlib_blocks")
