"""``n2q.Network``: a network from an INI file, an ONNX file or layers stacked in Python.

It is n2q's own :class:`n2q.net.Network` (an ``nn.Module``: ``net(x)`` returns
``{target cell: output}``), built by the same builder from the same INI sections, plus what a
Python user needs: ``for cell in net``, ``net["conv1"]``, the provider it learns from, weights
folders, fusion, graph drawing, and ``to_ini()`` (the INI file of a network built in Python).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from collections.abc import Sequence as Seq
from pathlib import Path
from typing import Any

import torch

from n2q.api.data import Provider
from n2q.api.keys import add_section, new_config, render_ini
from n2q.api.layers import Layer, layer_keys
from n2q.errors import UserError, did_you_mean
from n2q.net.graph import Network as _Network

# cell -> its network (weak both ways: nothing kept alive, nothing added to what pickles)
NETWORK_OF: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Network(_Network):
    """A built n2q network; construct it with :meth:`from_ini`, :meth:`from_onnx` or
    :meth:`from_layers` (= ``n2q.Sequence``)."""

    provider: Provider | None

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def _build(cls, cfg: Any, provider: Provider | None, shape: Seq[int]) -> Network:
        from n2q.net import build_network
        from n2q.train.solvers import check_network_solvers

        net = build_network(cfg, shape)
        check_network_solvers(net)
        # the same object, with this class's methods: the quantizers were bound to it
        net.__class__ = cls
        net.provider = provider
        for cell in net.cells.values():   # set_quantizer binds a new quantizer to its net
            NETWORK_OF[cell] = weakref.ref(net)
        return net

    @classmethod
    def from_ini(cls, path: str | Path) -> Network:
        """The network of an INI file (or of an ``.onnx`` file run alone, as ``n2q
        model.onnx`` does), with the INI's provider. Call :func:`n2q.seed` first for the
        same initial weights as ``n2q NET.ini -seed N``."""
        from n2q.run import load_network_file

        cfg = load_network_file(str(path))
        provider = Provider.from_config(cfg)
        return cls._build(cfg, provider, provider.size)

    @classmethod
    def from_onnx(cls, path: str | Path, provider: Provider, *, init: bool = True,
                  defaults: Mapping[str, Mapping[str, Any]] | None = None,
                  softmax: str | None = "softmax", **options: Any) -> Network:
        """Import an ONNX model (N2D2's cell names: each node's first output) fed by
        ``provider``. ``init=False`` starts from the fillers instead of the graph's weights
        (``ONNX_init=0``); ``defaults`` gives layer keywords per cell type, as the INI's
        ``[onnx:Conv_def]`` blocks do: ``defaults={"Conv": {"weights_filler":
        Filler("Xavier"), "no_bias": True}}``. ``softmax`` names the Softmax (with loss) added
        after the graph's output, which is the target (None: the output itself is).
        ``options``: other keys of the ``[onnx]`` section (``ignore_input_size=True``...)."""
        file = Path(path)
        if not file.is_file():
            raise UserError(f"no such ONNX file: {file}")
        cfg = _provider_config(provider)
        for type_name, keys in (defaults or {}).items():
            from n2q.net import CELL_TYPES

            if type_name not in CELL_TYPES:
                raise UserError(f"from_onnx(defaults={{{type_name!r}: ...}}): unknown cell type"
                                f"{did_you_mean(type_name, CELL_TYPES)}; valid: "
                                f"{', '.join(sorted(CELL_TYPES))}")
            add_section(cfg, f"onnx:{type_name}_def", Layer(type_name, **keys).keys())
        onnx_keys = {"Input": "sp", "Type": "ONNX", "File": str(file.resolve()),
                     "ONNX_init": "1" if init else "0", **layer_keys(**options)}
        add_section(cfg, "onnx", onnx_keys, file=str(file))
        target = "onnx"
        if softmax is not None:
            add_section(cfg, softmax, {"Input": "onnx", "Type": "Softmax", "WithLoss": "1"})
            target = softmax
        add_section(cfg, f"{target}.Target", {})
        return cls._build(cfg, provider, provider.size)

    @classmethod
    def from_layers(cls, layers: Seq[Layer], provider: Provider | None = None, *,
                    input_size: Seq[int] | None = None) -> Network:
        """Stack layers: each reads the previous one (the first reads the provider) unless
        its ``inputs`` say otherwise; the last one is the target. Without a provider, give
        ``input_size`` (width, height, channels) and learn with your own loop."""
        layers = list(layers)
        if not layers or not all(isinstance(layer, Layer) for layer in layers):
            raise UserError("Sequence([...]): give a non-empty list of n2q layers (n2q.Conv, "
                            "n2q.Fc, n2q.Layer(...))")
        if provider is not None:
            cfg, shape = _provider_config(provider), provider.size
        elif input_size is not None:
            w, h, c = (*[int(v) for v in input_size], 1)[:3]
            cfg, shape = new_config(), (c, h, w)
        else:
            raise UserError("Sequence(...): give a provider or input_size=(width, height, "
                            "channels)")
        previous, counts = "sp", {}
        for layer in layers:
            counts[layer.type] = counts.get(layer.type, 0) + 1
            name = layer.name or f"{layer.type.lower()}{counts[layer.type]}"
            add_section(cfg, name, layer.section_keys(layer.inputs or [previous]))
            previous = name
        add_section(cfg, f"{previous}.Target", {})
        return cls._build(cfg, provider, shape)

    # -- cells -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        """The cells in execution order (``cell.name``, ``cell.type``...)."""
        return iter(self.cells.values())

    def __len__(self) -> int:
        return len(self.cells)

    def __contains__(self, name: object) -> bool:
        return name in self.cells

    def __getitem__(self, name: str) -> Any:
        if name not in self.cells:
            raise KeyError(f"no cell {name!r}{did_you_mean(name, self.cells.keys())}")
        return self.cells[name]

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """The first target's output as [B, K] (logits for a Softmax with loss): what a
        plain PyTorch loop feeds to ``F.cross_entropy``."""
        return self(x)[self.targets[0].cell].flatten(1)

    def to_ini(self) -> str:
        """The INI text of this network (and its provider): ``n2q`` on that file builds the
        same network."""
        if self.config is None:
            raise UserError("this network has no INI description")
        return render_ini(self.config, self.cells.values())

    # -- weights folders, fusion, drawing, export -------------------------------------------
    def save_weights(self, folder: str | Path, *, plots: bool = True) -> Path:
        """Write an N2D2 weights folder (``.syntxt`` per cell and quantizer, distribution
        plots of the quantized weights); atomic."""
        from n2q.io.weights import save_weights

        return save_weights(self, folder, plots=plots)

    def load_weights(self, folder: str | Path, *, ignore_missing: bool = True) -> Any:
        """Load a weights folder (N2D2's or n2q's). ``ignore_missing`` (the seed's
        ``ignore_not_exists``): a cell or quantizer without file keeps its values, with a
        notice; False makes a missing file an error. Returns LoadResult(loaded, missing)."""
        from n2q.io.weights import load_weights

        if str(folder) != "/dev/null" and not Path(folder).is_dir():
            raise UserError(f"no such weights folder: {folder}")
        return load_weights(self, folder, ignore_missing=ignore_missing)

    def fuse(self, folder: str | Path | None = None) -> Any:
        """The integer-only network of a SAT-trained network (``-qat-sat``; BatchNorm and
        quantizers folded into integer weights, biases, scalings and clips): an nn.Module
        giving the same target dict. ``folder``: also write ``weights_quantized``-style
        files there. Cells that cannot be fused stay float, with a notice."""
        from n2q.errors import notice
        from n2q.quant.fuse import fuse_sat, save_fused

        self.eval()
        fused, float_lines = fuse_sat(self)
        for line in float_lines:
            notice(line)
        if folder is not None:
            save_fused(fused, folder)
        return fused

    def draw_graph(self, path: str | Path, model: Any = None) -> list[Path]:
        """``<path>.dot`` and ``<path>.png`` (quantizers shown); ``model``: draw another
        network of this one instead (the fused network)."""
        from n2q.io.graph import draw_graph

        return draw_graph(self if model is None else model, path)

    def export_onnx(self, folder: str | Path = ".", *, name: str = "network",
                    batch: torch.Tensor | None = None) -> Path:
        """Export to ``<folder>/export_ONNX/<name>.onnx`` with n2q's exporter (``-export
        ONNX``): a float model, or a QDQ model (plus calibration files) for a quantized
        network, checked in onnxruntime on ``batch`` (default: the first batch of the Test
        set, else Validation, else Learn) before anything is written. Returns the model."""
        try:
            from n2q.export import export_network
        except ImportError:
            raise UserError("ONNX export is not available in this n2q build (n2q.export is "
                            "missing)") from None
        if batch is None:
            batch = self._first_batch()
        self.eval()
        return export_network(self, "ONNX", batch=batch, folder=folder, name=name).model

    def _first_batch(self) -> torch.Tensor:
        if self.provider is None:
            raise UserError("export_onnx(batch=...): this network has no provider to take "
                            "the stimuli of the check from: give a batch [B, C, H, W]")
        sp = self.provider.stimuli
        sizes = sp.partition_sizes()
        partition = next((p for p in ("Test", "Validation", "Learn") if sizes.get(p, 0)), None)
        if partition is None:
            raise UserError("export_onnx: the data base has no stimulus to check the export on")
        return next(iter(sp.loader(partition, shuffle=False, limit=sp.batch_size)))[0]

    # -- learning --------------------------------------------------------------------------
    def learn(self, **options: Any) -> Path | None:
        """:func:`n2q.learn` on this network."""
        from n2q.api.run import learn

        return learn(self, **options)

    def test(self, partition: str = "Test", **options: Any) -> dict[str, float]:
        """:func:`n2q.test` on this network."""
        from n2q.api.run import test

        return test(self, partition, **options)


def _provider_config(provider: Provider) -> Any:
    """A new Config starting with the provider's sections (so that ``[sp]SizeX`` and the
    like resolve, and ``to_ini()`` is complete)."""
    if not isinstance(provider, Provider):
        raise UserError(f"expected an n2q.Provider, got {type(provider).__name__}")
    cfg = new_config()
    for name, keys in provider.sections():
        add_section(cfg, "sp" if name == provider.name else
                    ("sp" + name[len(provider.name):] if name.startswith(provider.name + ".")
                     else name), keys)
    return cfg


def Sequence(layers: Seq[Layer], provider: Provider | None = None, *,  # noqa: N802
             input_size: Seq[int] | None = None) -> Network:
    """``n2q.Sequence([...], provider)``: layers stacked in order (:meth:`Network.from_layers`)."""
    return Network.from_layers(layers, provider, input_size=input_size)
