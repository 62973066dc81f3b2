"""n2q: train quantized neural networks from N2D2 INI files, on PyTorch."""

__version__ = "0.1.0"
