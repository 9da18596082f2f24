"""Regenerate the circuit-diagram gallery (docs/diagrams/*.svg and *.png) from the examples.

    PYTHONPATH=. python scripts/gen_diagrams.py
"""
from __future__ import annotations

from pathlib import Path

import nndsl

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "diagrams"

# (file stem, example, options): the paper's five figures plus the MLP warm-up
GALLERY = [
    ("mlp", "mlp.nn", {}),
    ("attention", "attention.nn", {}),
    ("transformer_block", "gpt2_small.nn", {"depth": 2}),
    ("strided_conv", "conv.nn", {}),
    ("strided_conv_detail", "conv.nn", {"detail": True}),
    ("residual_block", "resblock.nn", {}),
    ("unet", "unet.nn", {"depth": 1}),
    ("vit", "vit_b16.nn", {"depth": 1}),
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for stem, example, opts in GALLERY:
        d = nndsl.draw(ROOT / "examples" / example, **opts)
        d.save(OUT / f"{stem}.svg")
        d.save(OUT / f"{stem}.png")
        print(f"docs/diagrams/{stem}.svg  ({len(d.diagram.glyphs)} glyphs, {len(d.diagram.wires)} wires)")


if __name__ == "__main__":
    main()
