"""gwstream.kernels: pure Numba/NumPy numerical kernels (no I/O, no logging, no globals)."""
