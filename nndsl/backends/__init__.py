"""Backends: PyTorch source and modules, Graphviz diagrams, summaries. Only these import heavy frameworks."""
