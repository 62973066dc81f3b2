"""``n2q model.onnx``: the in-memory INI of an ONNX file given alone (spec/cli.md): a
[database] chosen from the graph's input size, an [sp] sized from it, the [onnx] section and
one target per graph output."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from n2q.config import Config
from n2q.errors import UserError
from n2q.net.onnx import OnnxOptions

if TYPE_CHECKING:
    from n2q.net.onnx_graph import OnnxGraph


def config_for_onnx_file(path: str | Path) -> Config:
    """An in-memory INI running ``path`` alone (``n2q model.onnx``): a provider sized from the
    graph input, the ``[onnx]`` section, a target on each graph output."""
    from n2q.config.parser import parse_text
    from n2q.net.onnx_graph import GraphError, load_graph

    path = Path(path).resolve()
    try:
        graph = load_graph(path)
    except GraphError as exc:
        raise UserError(str(exc), file=path) from None
    if len(graph.data_inputs) != 1:
        raise UserError(f"the graph has {len(graph.data_inputs)} data inputs; running an ONNX "
                        "file alone needs exactly one: write an INI with an [onnx] section",
                        file=path)
    dims = graph.shapes.get(graph.data_inputs[0], ())
    if len(dims) != 4:
        raise UserError(f"the graph input '{graph.data_inputs[0]}' is not N x C x H x W "
                        f"(dims {list(dims)}): write an INI with [sp] and an [onnx] section",
                        file=path)
    batch = _declared_batch(graph)
    _, c, h, w = dims
    targets = _output_cells(graph, path)
    text = "\n".join([
        _default_data(path, c, h, w),
        "[sp]", f"SizeX={w}", f"SizeY={h}", f"NbChannels={c}", f"BatchSize={batch}", "",
        *_default_transformations(c, h, w),
        "[onnx]", "Input=sp", "Type=ONNX", f"File={path}", "",
        *[f"[{name}.Target]\n" for name in targets]])
    cfg = Config(path)
    parse_text(cfg, text, str(path))
    _forget_lines(cfg)
    return cfg


def _forget_lines(cfg: Config) -> None:
    """The INI of ``n2q model.onnx`` is n2q's, not a file: errors name the .onnx file and the
    section, never a line (``model.onnx: [onnx] File: ...``)."""
    for sec in cfg.sections:
        sec.line = 0
        for entry in (*sec.entries.values(), *sec.variables.values()):
            entry.line = 0


# -- loading -----------------------------------------------------------------------------------
def _default_data(path: Path, c: int, h: int, w: int) -> str:
    """The data set a graph input of this size usually means: MNIST (1x28x28), CIFAR-10
    (3x32x32), else ImageNet for 3-channel inputs (the model zoo)."""
    if (c, h, w) == (1, 28, 28):
        return "[database]\nType=MNIST_IDX_Database\n"
    if (c, h, w) == (3, 32, 32):
        return "[database]\nType=CIFAR10_Database\n"
    if c == 3:
        return "[database]\nType=ILSVRC2012_Database\nRandomPartitioning=0\nLearn=1.0\n"
    raise UserError(f"no default data set for a {c}x{h}x{w} graph input (n2q knows 1x28x28 "
                    "MNIST, 3x32x32 CIFAR-10 and 3xHxW ImageNet): write an INI with "
                    "[database], [sp] and an [onnx] section", file=path)


def _default_transformations(c: int, h: int, w: int) -> list[str]:
    """ImageNet's usual evaluation: shorter side to 256/224 of the input, centre crop, RGB in
    [0, 1], per-channel mean/std (what the zoo models expect)."""
    if c != 3 or (h, w) == (32, 32):
        return []
    return [
        "[sp.Transformation-1]", "Type=RescaleTransformation", f"Width={round(w * 256 / 224)}",
        f"Height={round(h * 256 / 224)}", "KeepAspectRatio=1", "ResizeToFit=0", "",
        "[sp.Transformation-2]", "Type=PadCropTransformation", f"Width={w}", f"Height={h}", "",
        "[sp.Transformation-3]", "Type=ColorSpaceTransformation", "ColorSpace=RGB", "",
        "[sp.Transformation-4]", "Type=RangeAffineTransformation", "FirstOperator=Divides",
        "FirstValue=255.0", "",
        "[sp.Transformation-5]", "Type=RangeAffineTransformation", "FirstOperator=Minus",
        "FirstValue=0.485 0.456 0.406", "SecondOperator=Divides",
        "SecondValue=0.229 0.224 0.225", ""]


def _declared_batch(graph: OnnxGraph) -> int:
    """The graph's batch dimension when it is > 1; exporters usually write 1 (their dummy
    input), and n2q then batches by 32 for speed (test results do not depend on it)."""
    from n2q.net.onnx_graph import data_input_dims

    dims = data_input_dims(graph.model)[0][1]
    return dims[0] if dims and dims[0] and dims[0] > 1 else 32


def _output_cells(graph: OnnxGraph, path: Path) -> list[str]:
    """Cell names of the graph outputs (an output that is a Relu or Flatten names the cell
    it folds into), by translating the graph without building anything."""
    from n2q.config.parser import parse_text
    from n2q.net.onnx_ops import translate

    probe = Config(path)
    parse_text(probe, f"[onnx]\nInput=sp\nType=ONNX\nFile={path}\n", str(path))
    _forget_lines(probe)
    section = probe["onnx"]
    _, _, outputs = translate(graph, section, OnnxOptions.from_section(section), ["sp"])
    return outputs
