"""The fast engine: the seed's math (models/plain.py) with preallocated workspaces, fused BLAS
steps (blas.py) and the first layer's Gram form (gram.py). ``train(..., engine="fast")``, the
default, runs it; models/plain.py never imports it."""
