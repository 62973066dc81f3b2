"""Weights folders (.syntxt), saved state (net_state/), plots and graph drawing.

Submodules import torch / matplotlib; this package itself imports nothing heavy so that
``import n2q.cli`` stays fast.
"""
