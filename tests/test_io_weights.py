"""Weights folders (spec/weights.md): exact N2D2 text layout, float32-exact round trips for every
cell kind and mapping, error messages, atomic writes, quantizer parameter files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from n2q.errors import UserError
from n2q.io import cell_formats
from n2q.io import weights as weights_module
from n2q.io.syntxt import safe_name
from n2q.io.weights import CELL_FORMATS, load_weights, save_weights
from n2q.net.batchnorm import BatchNormCell
from n2q.net.conv import ConvCell
from n2q.net.fc import FcCell
from n2q.quant.lsq import LSQAct, LSQWeight
from n2q.quant.sat import SATAct, SATWeight


class TinyNet(nn.Module):
    """The part of the Network contract save/load use: ``cells`` in order, ``inputs``."""

    def __init__(self, *cells: nn.Module) -> None:
        super().__init__()
        self.cells = nn.ModuleDict({cell.name: cell for cell in cells})
        self.inputs = {cell.name: list(cell.inputs) for cell in cells}


def conv(name: str = "conv1", out: int = 2, channels: int = 2, kernel=(2, 2), **kw) -> ConvCell:
    return ConvCell(name, ["sp"], (channels, 6, 6), out, kernel, **kw)


def fill(cell: nn.Module, seed: int = 0) -> nn.Module:
    """Awkward float32 values (many digits, tiny, huge, negative) in every tensor of the cell,
    masked weights kept at 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(cell.parameters()) + list(cell.buffers()):
            if tensor.dtype.is_floating_point:
                magnitude = 10.0 ** torch.randint(-30, 30, tensor.shape, generator=generator)
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * magnitude)
        if getattr(cell, "mask", None) is not None:
            cell.weight.mul_(cell.mask)
        if isinstance(cell, BatchNormCell):
            cell.running_var.abs_()
    return cell


def same_tensors(a: nn.Module, b: nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def numbers(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines()]


def set_weight(cell: nn.Module, values: list) -> None:
    with torch.no_grad():
        cell.weight.copy_(torch.tensor(values, dtype=torch.float32).reshape(cell.weight.shape))


# ---------------------------------------------------------------------------------------------
# Exact text layout on hand-made cells


def test_conv_layout_is_n2d2_text(tmp_path: Path) -> None:
    cell = conv(out=2, channels=2, kernel=(2, 2))
    set_weight(cell, np.arange(16) / 4 - 1)  # w[o, c, y, x] = (8o + 4c + 2y + x)/4 - 1
    with torch.no_grad():
        cell.bias.copy_(torch.tensor([0.1, -2.0]))
    save_weights(TinyNet(cell), tmp_path / "w")
    assert (tmp_path / "w" / "conv1_weights.syntxt").read_text() == (
        "-1 -0.75 -0.5 -0.25 0 0.25 0.5 0.75 \n"
        "1 1.25 1.5 1.75 2 2.25 2.5 2.75 \n")
    # 0.1 as float32 is 0.100000001490116...: 9 significant digits
    assert (tmp_path / "w" / "conv1_biases.syntxt").read_text() == "0.100000001\n-2\n"


def test_conv_hwco_layout_transposes(tmp_path: Path) -> None:
    cell = conv(out=2, channels=2, kernel=(2, 2), bias=False, weights_export_format="HWCO")
    set_weight(cell, np.arange(16))  # w[o, c, k] = 8o + 4c + k
    save_weights(TinyNet(cell), tmp_path / "w")
    # one line per kernel position k; on it channel-major pairs (c, o): w[0,0,k] w[1,0,k] ...
    assert numbers(tmp_path / "w" / "conv1_weights.syntxt") == [
        [k, 8 + k, 4 + k, 12 + k] for k in range(4)]
    assert not (tmp_path / "w" / "conv1_biases.syntxt").exists()


def test_sparse_mapping_writes_connected_kernels_only(tmp_path: Path) -> None:
    mask = torch.tensor([[1, 0], [1, 1], [0, 1]], dtype=torch.bool)  # [O=3, C=2]
    cell = conv(out=3, channels=2, kernel=(1, 2), mask=mask, bias=False)
    set_weight(cell, np.arange(12) + 1)  # w[o, c, x] = 4o + 2c + x + 1
    with torch.no_grad():
        cell.weight.mul_(cell.mask)
    save_weights(TinyNet(cell), tmp_path / "w")
    assert numbers(tmp_path / "w" / "conv1_weights.syntxt") == [
        [1, 2], [5, 6, 7, 8], [11, 12]]


def test_grouped_conv_hwco_uses_the_full_channel_matrix(tmp_path: Path) -> None:
    # 4 inputs, 2 outputs, 2 groups: output 0 <- channels 0,1 ; output 1 <- channels 2,3
    cell = conv(out=2, channels=4, kernel=(1, 2), groups=2, bias=False,
                weights_export_format="HWCO")
    set_weight(cell, np.arange(8))  # w[o, cl, x] = 4o + 2cl + x
    save_weights(TinyNet(cell), tmp_path / "w")
    # position x: channel 0 (o0), channel 1 (o0), channel 2 (o1), channel 3 (o1)
    assert numbers(tmp_path / "w" / "conv1_weights.syntxt") == [[0, 2, 4, 6], [1, 3, 5, 7]]


def test_depthwise_writes_one_kernel_per_output(tmp_path: Path) -> None:
    cell = conv(out=3, channels=3, kernel=(1, 2), groups=3, bias=False)
    set_weight(cell, np.arange(6))
    save_weights(TinyNet(cell), tmp_path / "w")
    assert numbers(tmp_path / "w" / "conv1_weights.syntxt") == [[0, 1], [2, 3], [4, 5]]


def test_fc_and_batchnorm_layout(tmp_path: Path) -> None:
    fc = FcCell("fc", ["sp"], (1, 1, 3), 2)
    set_weight(fc, [[1, 2, 3], [4, 5, 6]])
    fc_co = FcCell("fc_co", ["sp"], (1, 1, 3), 2, bias=False, weights_export_format="CO")
    set_weight(fc_co, [[1, 2, 3], [4, 5, 6]])
    bn = BatchNormCell("bn", ["sp"], (2, 1, 1))
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -0.5]))
    save_weights(TinyNet(fc, fc_co, bn), tmp_path / "w")
    folder = tmp_path / "w"
    assert (folder / "fc_weights.syntxt").read_text() == "1 2 3 \n4 5 6 \n"
    assert numbers(folder / "fc_co_weights.syntxt") == [[1, 4], [2, 5], [3, 6]]
    assert (folder / "bn_scales.syntxt").read_text() == "1\n1\n"
    assert (folder / "bn_biases.syntxt").read_text() == "0\n0\n"
    assert (folder / "bn_means.syntxt").read_text() == "0.5\n-0.5\n"
    assert (folder / "bn_variances.syntxt").read_text() == "1\n1\n"


# ---------------------------------------------------------------------------------------------
# Float32-exact round trips

ROUND_TRIP_CELLS = {
    "conv_dense": lambda: conv(out=5, channels=3, kernel=(3, 2)),
    "conv_grouped": lambda: conv(out=4, channels=6, kernel=(3, 3), groups=2),
    "conv_depthwise": lambda: conv(out=4, channels=4, kernel=(3, 3), groups=4, bias=False),
    "conv_sparse": lambda: conv(out=3, channels=2, kernel=(2, 2),
                                mask=torch.tensor([[1, 0], [1, 1], [0, 1]], dtype=torch.bool)),
    "conv_hwco": lambda: conv(out=4, channels=3, kernel=(2, 3), weights_export_format="HWCO"),
    "conv_sparse_hwco": lambda: conv(out=3, channels=2, kernel=(2, 2), weights_export_format="HWCO",
                                     mask=torch.tensor([[1, 0], [1, 1], [0, 1]], dtype=torch.bool)),
    "conv_grouped_hwco": lambda: conv(out=4, channels=6, kernel=(2, 2), groups=2,
                                      weights_export_format="HWCO"),
    "fc": lambda: FcCell("fc", ["sp"], (2, 3, 3), 4),
    "fc_co": lambda: FcCell("fc", ["sp"], (2, 3, 3), 4, weights_export_format="CO"),
    "batchnorm": lambda: BatchNormCell("bn", ["sp"], (5, 2, 2)),
}


@pytest.mark.parametrize("kind", sorted(ROUND_TRIP_CELLS))
def test_round_trip_is_float32_exact(tmp_path: Path, kind: str) -> None:
    saved = fill(ROUND_TRIP_CELLS[kind](), seed=1)
    loaded = fill(ROUND_TRIP_CELLS[kind](), seed=2)
    save_weights(TinyNet(saved), tmp_path / "w")
    result = load_weights(TinyNet(loaded), tmp_path / "w")
    assert result.missing == [] and result.loaded
    same_tensors(saved, loaded)


def test_float64_parameters_round_trip_exactly(tmp_path: Path) -> None:
    """DefaultDataType=Float64 networks: 17 significant digits instead of 9."""
    saved = fill(conv(out=3, channels=2, kernel=(2, 2)).double(), seed=4)
    loaded = conv(out=3, channels=2, kernel=(2, 2)).double()
    save_weights(TinyNet(saved), tmp_path / "w")
    load_weights(TinyNet(loaded), tmp_path / "w")
    same_tensors(saved, loaded)
    assert len((tmp_path / "w" / "conv1_biases.syntxt").read_text().split()[0]) > 12


def test_every_registered_cell_format_is_covered() -> None:
    covered = {ROUND_TRIP_CELLS[kind]().type for kind in ROUND_TRIP_CELLS}
    assert set(CELL_FORMATS) <= covered


def test_quantizer_files_round_trip_and_stay_loaded(tmp_path: Path) -> None:
    def make() -> TinyNet:
        c = conv(out=2, channels=2, kernel=(3, 3))
        c.weight_quantizer = LSQWeight(range=15)
        c.act_quantizer = SATAct(alpha=3.0, range=15)
        f = FcCell("fc", ["conv1"], (2, 4, 4), 3)
        f.weight_quantizer = SATWeight(range=15)
        f.act_quantizer = LSQAct(range=255)
        return TinyNet(c, f)

    saved = make()
    with torch.no_grad():
        saved.cells["conv1"].weight_quantizer.step_size.fill_(0.0123456789)
        saved.cells["conv1"].act_quantizer.alpha.fill_(2.71828182)
        saved.cells["fc"].act_quantizer.step_size.fill_(0.3)
    save_weights(saved, tmp_path / "w")
    folder = tmp_path / "w"
    assert (folder / "conv1_alphaW_LSQ.syntxt").read_text() == "0.0123456791\n"
    assert (folder / "conv1_QAct_SAT_Alpha.syntxt").exists()
    assert (folder / "fc_QAct_LSQ_StepSize.syntxt").exists()
    loaded = make()
    load_weights(loaded, folder)
    for (name, x), (_, y) in zip(saved.named_parameters(), loaded.named_parameters(),
                                 strict=True):
        assert torch.equal(x, y), name
    assert bool(loaded.cells["conv1"].weight_quantizer.initialized)
    # a loaded step size is not re-initialized by the first training forward
    cell = loaded.cells["conv1"]
    cell.train()
    cell(torch.randn(2, 2, 6, 6))
    assert cell.weight_quantizer.step_size.item() == np.float32(0.0123456789)


def test_quantized_copies_and_distribution_plots(tmp_path: Path) -> None:
    c = fill(conv(out=2, channels=2, kernel=(3, 3)))
    c.weight_quantizer = SATWeight(range=3)
    f = fill(FcCell("fc", ["conv1"], (2, 4, 4), 3))
    f.weight_quantizer = SATWeight(range=3)
    plain = conv("plain", out=2, channels=2, kernel=(3, 3))
    save_weights(TinyNet(c, f, plain), tmp_path / "w")
    folder = tmp_path / "w"
    quantized = np.array(numbers(folder / "conv1_quant_weights.syntxt"))
    assert quantized.shape == (2, 18)
    levels = np.array([-1.0, -1 / 3, 1 / 3, 1.0])  # SAT, Range=3: 4 levels in [-1, 1]
    assert np.abs(quantized[..., None] - levels).min(axis=-1).max() < 1e-6
    with torch.no_grad():
        expected = c.weight_quantizer.fake_quantize(c.weight).reshape(2, 18).numpy()
    assert np.array_equal(quantized.astype(np.float32), expected)
    assert np.array(numbers(folder / "fc_quant_weights_quant.syntxt")).shape == (3, 32)
    for name in ("conv1", "fc"):
        for kind in ("weights", "weights_quant"):
            png = folder / f"{name}_{kind}.distrib.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (folder / "plain_weights.distrib.png").exists()
    assert not (folder / "plain_quant_weights.syntxt").exists()


# ---------------------------------------------------------------------------------------------
# Import rules and error messages


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def test_too_few_values_names_file_and_line(tmp_path: Path) -> None:
    cell = conv(out=2, channels=1, kernel=(1, 2), bias=False)
    path = write(tmp_path / "w", "conv1_weights.syntxt", "1 2 \n3 \n")
    with pytest.raises(UserError, match=r"conv1_weights.syntxt:2: 1 values on this line, "
                       r"expected 2 \(output channel 1\)"):
        load_weights(TinyNet(cell), path.parent)


def test_too_many_values_names_the_line(tmp_path: Path) -> None:
    cell = conv(out=2, channels=1, kernel=(1, 2), bias=False)
    path = write(tmp_path / "w", "conv1_weights.syntxt", "1 2\n3 4\n5\n")
    with pytest.raises(UserError, match=r"conv1_weights.syntxt:3: too many values: 5, "
                       r"expected 4"):
        load_weights(TinyNet(cell), path.parent)


def test_too_few_lines(tmp_path: Path) -> None:
    cell = conv(out=3, channels=1, kernel=(1, 2), bias=False)
    path = write(tmp_path / "w", "conv1_weights.syntxt", "1 2\n3 4\n")
    with pytest.raises(UserError, match=r"conv1_weights.syntxt:2: too few values: 4, "
                       r"expected 6 \(3 lines, one per output channel\)"):
        load_weights(TinyNet(cell), path.parent)


def test_non_number_names_token_and_line(tmp_path: Path) -> None:
    cell = conv(out=2, channels=1, kernel=(1, 2), bias=False)
    path = write(tmp_path / "w", "conv1_weights.syntxt", "1 2\n3 x4\n")
    with pytest.raises(UserError, match=r"conv1_weights.syntxt:2: 'x4' is not a number"):
        load_weights(TinyNet(cell), path.parent)


def test_wrong_bias_count(tmp_path: Path) -> None:
    cell = conv(out=2, channels=1, kernel=(1, 2))
    write(tmp_path / "w", "conv1_weights.syntxt", "1 2\n3 4\n")
    write(tmp_path / "w", "conv1_biases.syntxt", "1\n2\n3\n")
    with pytest.raises(UserError, match=r"conv1_biases.syntxt:3: too many values: 3, expected 2"):
        load_weights(TinyNet(cell), tmp_path / "w")


def test_missing_biases_file_is_an_error(tmp_path: Path) -> None:
    cell = conv(out=2, channels=1, kernel=(1, 2))
    write(tmp_path / "w", "conv1_weights.syntxt", "1 2\n3 4\n")
    with pytest.raises(UserError, match=r"missing biases file for conv1, which has biases "
                       r"\(NoBias=0\): expected conv1_biases.syntxt with 2 values"):
        load_weights(TinyNet(cell), tmp_path / "w")


def test_missing_file_keeps_initialization_with_notice(tmp_path: Path, capsys) -> None:
    present = conv("conv1", out=1, channels=1, kernel=(1, 2), bias=False)
    absent = fill(conv("conv2", out=1, channels=1, kernel=(1, 2)))
    before = absent.weight.detach().clone()
    write(tmp_path / "w", "conv1_weights.syntxt", "0.5 -0.5\n")
    result = load_weights(TinyNet(present, absent), tmp_path / "w")
    assert present.weight.flatten().tolist() == [0.5, -0.5]
    assert torch.equal(absent.weight, before)
    assert result.missing == ["conv2_weights.syntxt"]
    err = capsys.readouterr().err
    assert f"no weights for conv2 in {tmp_path / 'w'}, keeping its initialization" in err


def test_missing_file_strict_is_an_error(tmp_path: Path) -> None:
    cell = conv(out=1, channels=1, kernel=(1, 2))
    (tmp_path / "w").mkdir()
    with pytest.raises(UserError, match=r"no weights for conv1 \(conv1_weights.syntxt missing\)"):
        load_weights(TinyNet(cell), tmp_path / "w", ignore_missing=False)
    with pytest.raises(UserError, match="use -w-ignore"):
        load_weights(TinyNet(cell), tmp_path / "w", strict_missing=True)


def test_missing_quantizer_file_keeps_initialization(tmp_path: Path, capsys) -> None:
    """Transfer: weights_clamped (no activation quantizer) into a network with QAct=SAT."""
    cell = conv(out=1, channels=1, kernel=(1, 2), bias=False)
    cell.act_quantizer = SATAct(alpha=8.0, range=15)
    write(tmp_path / "w", "conv1_weights.syntxt", "1 2\n")
    load_weights(TinyNet(cell), tmp_path / "w")
    assert cell.act_quantizer.alpha.item() == 8.0
    assert "conv1_QAct_SAT_Alpha.syntxt" in capsys.readouterr().err


def test_quantizer_file_with_two_values(tmp_path: Path) -> None:
    cell = conv(out=1, channels=1, kernel=(1, 2), bias=False)
    cell.act_quantizer = SATAct(range=15)
    write(tmp_path / "w", "conv1_weights.syntxt", "1 2\n")
    write(tmp_path / "w", "conv1_QAct_SAT_Alpha.syntxt", "1\n2\n")
    with pytest.raises(UserError, match=r"conv1_QAct_SAT_Alpha.syntxt:2: too many values"):
        load_weights(TinyNet(cell), tmp_path / "w")


def test_single_file_variant_weights_then_bias(tmp_path: Path) -> None:
    cell = conv(out=2, channels=1, kernel=(1, 2))
    fc = FcCell("fc", ["conv1"], (1, 1, 2), 2)
    write(tmp_path / "w", "conv1.syntxt", "1 2 0.5\n3 4 -0.5\n")
    write(tmp_path / "w", "fc.syntxt", "5 6 7\n8 9 10\n")
    load_weights(TinyNet(cell, fc), tmp_path / "w")
    assert cell.weight.flatten().tolist() == [1, 2, 3, 4]
    assert cell.bias.tolist() == [0.5, -0.5]
    assert fc.weight.flatten().tolist() == [5, 6, 8, 9]
    assert fc.bias.tolist() == [7, 10]


def test_stream_layout_is_accepted_like_n2d2(tmp_path: Path) -> None:
    """N2D2 reads a weights file as a stream: line breaks do not matter, the count does."""
    cell = conv(out=2, channels=1, kernel=(1, 2), bias=False)
    write(tmp_path / "w", "conv1_weights.syntxt", "1 2 3 4\n")
    load_weights(TinyNet(cell), tmp_path / "w")
    assert cell.weight.flatten().tolist() == [1, 2, 3, 4]


def test_files_of_no_cell_are_reported(tmp_path: Path, capsys) -> None:
    write(tmp_path / "w", "conv1_weights.syntxt", "1 2\n")
    write(tmp_path / "w", "conv9_weights.syntxt", "1 2\n")
    load_weights(TinyNet(conv(out=1, channels=1, kernel=(1, 2), bias=False)), tmp_path / "w")
    assert "files matching no cell of the network, ignored: conv9_weights.syntxt" in (
        capsys.readouterr().err)


def test_dev_null_loads_nothing_and_missing_folder_is_an_error(tmp_path: Path) -> None:
    cell = fill(conv(out=1, channels=1, kernel=(1, 2)))
    before = cell.weight.detach().clone()
    assert load_weights(TinyNet(cell), os.devnull).loaded == []
    assert torch.equal(cell.weight, before)
    with pytest.raises(UserError, match="weights folder not found: .*nowhere"):
        load_weights(TinyNet(cell), tmp_path / "nowhere")


def test_unsafe_cell_names(tmp_path: Path) -> None:
    assert safe_name("resnet/layer1:conv 0") == "resnet_layer1_conv_0"
    cell = fill(conv("block/conv:1", out=1, channels=1, kernel=(1, 2)))
    save_weights(TinyNet(cell), tmp_path / "w")
    assert (tmp_path / "w" / "block_conv_1_weights.syntxt").exists()
    twin = conv("block_conv_1", out=1, channels=1, kernel=(1, 2))
    with pytest.raises(UserError, match="cells 'block/conv:1' and 'block_conv_1' would share"):
        save_weights(TinyNet(cell, twin), tmp_path / "w2")


# ---------------------------------------------------------------------------------------------
# Atomicity


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_save_leaves_old_folder_and_no_tmp(tmp_path: Path, monkeypatch, failure) -> None:
    first = fill(conv("conv1", out=2, channels=2, kernel=(2, 2)), seed=1)
    second = fill(conv("conv2", out=2, channels=2, kernel=(2, 2)), seed=2)
    save_weights(TinyNet(first, second), tmp_path / "w")
    before = {p.name: p.read_bytes() for p in (tmp_path / "w").iterdir()}
    fill(first, seed=3)
    real_write = weights_module.write_text
    calls = []

    def failing_write(path: Path, text: str) -> None:
        calls.append(path)
        if len(calls) == 3:  # after conv1's files: the folder is half written
            raise failure
        real_write(path, text)

    monkeypatch.setattr(weights_module, "write_text", failing_write)
    monkeypatch.setattr(cell_formats, "write_text", failing_write)
    with pytest.raises(type(failure)):
        save_weights(TinyNet(first, second), tmp_path / "w")
    assert {p.name: p.read_bytes() for p in (tmp_path / "w").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


def test_save_replaces_an_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "stale_weights.syntxt").write_text("1\n")
    save_weights(TinyNet(conv()), tmp_path / "w")
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [
        "conv1_biases.syntxt", "conv1_weights.syntxt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


def test_leftovers_of_killed_runs_are_removed(tmp_path: Path) -> None:
    """kill -9 during a save leaves <folder>.tmp-<pid>: the next save removes it, unless its
    process still runs (another n2q writing in the same directory)."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / f"w.tmp-{dead}").mkdir()
    (tmp_path / f"w.tmp-{dead}" / "conv1_weights.syntxt").write_text("1\n")
    (tmp_path / "w.tmp-1").mkdir()  # pid 1 (init) is alive
    save_weights(TinyNet(conv()), tmp_path / "w")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w", "w.tmp-1"]
