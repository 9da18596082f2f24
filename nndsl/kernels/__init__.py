"""Triton kernels for the hot ops of sparse and structured layers (nndsl/kernels/triton_backend.py).

Nothing here imports triton: the runtime (nndsl/sparsity/runtime.py) imports the backend on first use,
only where NNDSL_KERNELS allows it and a tensor could run on it.
"""
