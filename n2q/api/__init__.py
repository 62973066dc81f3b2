"""The Python API of n2q (re-exported by ``n2q``; see ``help(n2q)``).

Modules: keys (Python keywords <-> INI keys), settings (quantizers, solvers, fillers,
activations), data (data base, transformations, provider), layers (cells stacked in Python),
network (n2q.Network), cells (changing the cells of a built network), run (seed, learn,
test), torch_model (quantize_model for any PyTorch module).
"""
