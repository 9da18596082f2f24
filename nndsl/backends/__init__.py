"""Backends: PyTorch source and modules, Graphviz diagrams, summaries. Only these import heavy frameworks."""


def nested(root, children):
    """Depth first over a tree given by `children(node) -> list`: ("enter", node, depth) before a node's
    children and ("leave", node, depth) after them, the root at depth 0. An explicit stack: no recursion,
    and no closure that calls itself (a reference cycle; the front end frees its objects by reference
    counting alone, see compiler._no_gc)."""
    stack = [(False, root, 0)]
    while stack:
        leaving, node, depth = stack.pop()
        if leaving:
            yield "leave", node, depth
            continue
        yield "enter", node, depth
        stack.append((True, node, depth))
        stack.extend((False, ch, depth + 1) for ch in reversed(children(node)))
