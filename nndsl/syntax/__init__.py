"""Front end: grammar, parser, AST and the unparser."""
from .parser import parse_file, parse_text

__all__ = ["parse_file", "parse_text"]
