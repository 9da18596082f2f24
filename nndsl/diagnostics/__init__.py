"""Diagnostics: the data model, the catalogue of codes and a renderer that never raises."""
from .codes import CODES, explain
from .model import Abort, Diagnostic, Label, NNDSLError, Severity, Sink, Span
from .render import render, render_all, to_json

__all__ = [
    "CODES", "explain", "Abort", "Diagnostic", "Label", "NNDSLError", "Severity", "Sink", "Span",
    "render", "render_all", "to_json",
]
