"""Benchmark: save / load a ResNet-18-sized weights folder (11.7 M parameters).

    python tools/bench_weights.py [--quantized] [--repeat N]

Builds ResNet-18's cells (Conv / BatchNorm / Fc with ImageNet shapes) directly, then times
``save_weights`` (without and with the distribution plots) and ``load_weights`` in one run.
``--quantized`` attaches SAT weight quantizers, which adds the quantized copies
(``*_quant_weights.syntxt``) and two PNG histograms per Conv/Fc cell.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from n2q.io.weights import load_weights, save_weights
from n2q.net.batchnorm import BatchNormCell
from n2q.net.conv import ConvCell
from n2q.net.fc import FcCell


class Cells(nn.Module):
    def __init__(self, cells: list[nn.Module]) -> None:
        super().__init__()
        self.cells = nn.ModuleDict({cell.name: cell for cell in cells})
        self.inputs = {cell.name: list(cell.inputs) for cell in cells}


def resnet18_cells() -> list[nn.Module]:
    """Conv + BatchNorm pairs of ResNet-18 (shortcut projections included) and the Fc."""
    cells: list[nn.Module] = []
    previous, channels, size = "sp", 3, 224

    def conv_bn(name: str, source: str, c_in: int, c_out: int, kernel: int, stride: int,
                in_size: int) -> tuple[str, int]:
        pad = kernel // 2
        conv = ConvCell(name, [source], (c_in, in_size, in_size), c_out, (kernel, kernel),
                        stride=(stride, stride), padding=(pad, pad), bias=False)
        cells.append(conv)
        out_size = conv.out_shape[1]
        cells.append(BatchNormCell(f"{name}_bn", [name], (c_out, out_size, out_size)))
        return f"{name}_bn", out_size

    previous, size = conv_bn("conv1", previous, channels, 64, 7, 2, size)
    size = size // 2  # max pool
    channels = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            name = f"layer{stage}_{block}"
            a, out_size = conv_bn(f"{name}_conv1", previous, channels, width, 3, stride, size)
            b, _ = conv_bn(f"{name}_conv2", a, width, width, 3, 1, out_size)
            if stride != 1 or channels != width:
                conv_bn(f"{name}_downsample", previous, channels, width, 1, stride, size)
            previous, channels, size = b, width, out_size
    cells.append(FcCell("fc", [previous], (512, 1, 1), 1000))
    return cells


def timed(action) -> tuple[float, float]:
    """(wall, CPU) seconds of one call. CPU time is the figure to compare on a shared machine:
    wall time grows with the load of other processes."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def report(label: str, runs: list[tuple[float, float]]) -> None:
    wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
    print(f"{label:18s} best wall {wall:6.2f} s   best CPU {cpu:6.2f} s   ({len(runs)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quantized", action="store_true", help="attach SAT weight quantizers")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    net = Cells(resnet18_cells())
    if args.quantized:
        from n2q.quant.sat import SATWeight

        for cell in net.cells.values():
            if cell.type in ("Conv", "Fc"):
                cell.weight_quantizer = SATWeight(range=15)
    params = sum(p.numel() for p in net.parameters())
    print(f"ResNet-18 cells: {len(net.cells)}, parameters: {params / 1e6:.2f} M")
    folder = Path(tempfile.mkdtemp(prefix="bench_weights_")) / "weights"
    try:
        for label, plots in (("save (no plots)", False), ("save (with plots)", True)):
            report(label, [timed(lambda p=plots: save_weights(net, folder, plots=p))
                           for _ in range(args.repeat)])
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(f"folder: {len(list(folder.iterdir()))} files, {size / 1e6:.1f} MB")
        report("load", [timed(lambda: load_weights(net, folder)) for _ in range(args.repeat)])
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
