"""Passes over the IR, run in order by `nndsl.compiler.PIPELINE`."""
