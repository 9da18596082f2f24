"""Generate a large `.nn` spec with about `n` ops, for front-end benchmarks and tests."""
from __future__ import annotations


def big_spec(n_ops: int, width: int = 32) -> str:
    lines = ["model Big(D: int = %d) {" % width, "  input x: [B, D]"]
    prev = "x"
    for i in range(n_ops // 2):
        lines.append(f"  l{i} = linear({prev}, D)")
        lines.append(f"  a{i} = relu(l{i})")
        prev = f"a{i}"
    lines.append(f"  output y = {prev}")
    lines.append("}")
    return "\n".join(lines) + "\n"
