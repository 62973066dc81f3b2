"""-find-lr, a diverging loss, -fuse, -qat-sat, -export: the phases around learning."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_tiny_workdir, n2q, write_net


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory of test_train_loop.py (tiny IDX data under $N2Q_DATA)."""
    return make_tiny_workdir(tmp_path, monkeypatch)


def test_find_lr_writes_the_curve_and_exits(tiny: Path) -> None:
    ini = write_net(tiny)
    assert n2q(ini, "-find-lr", 160, "-seed", 1) == 0
    rows = np.loadtxt(tiny / "find_lr_softmax.dat")
    assert rows.shape == (10, 2)  # 160 stimuli = 10 batches of 16
    assert rows[0, 0] == pytest.approx(1e-6) and rows[-1, 0] == pytest.approx(10.0)
    ratios = rows[1:, 0] / rows[:-1, 0]
    np.testing.assert_allclose(ratios, 10 ** (7 / 9), rtol=1e-4)  # exponential
    assert (tiny / "find_lr_softmax.png").is_file()
    assert not (tiny / "weights_init").exists()


def test_nan_loss_stops_with_the_step_and_the_last_good_folder(
        tiny: Path, capsys: pytest.CaptureFixture) -> None:
    ini = write_net(tiny, lr=1e30, clamping="")
    assert n2q(ini, "-learn-epoch", 2, "-seed", 1) == 2
    err = capsys.readouterr().err
    assert re.search(r"loss became (nan|inf) at learn batch \d+: .*in weights_init/", err)


def test_an_export_type_n2q_lacks_is_refused_before_any_work(
        tiny: Path, capsys: pytest.CaptureFixture) -> None:
    ini = write_net(tiny)
    assert n2q(ini, "-learn-epoch", 1, "-export", "CPP") == 2
    assert "-export CPP: not supported by n2q; the supported export type is ONNX" in (
        capsys.readouterr().err)
    assert sorted(p.name for p in tiny.iterdir()) == [ini]  # nothing learned, nothing written


def test_bad_input_leaves_nothing_and_unused_sections_are_named(
        tiny: Path, capsys: pytest.CaptureFixture) -> None:
    ini = write_net(tiny)
    with open(tiny / ini, "a") as f:
        f.write("\n[foo]\nBar=1\n")
    # a -w folder that does not exist: refused once INI and data are read, before any write
    assert n2q(ini, "-test", "-seed", 2, "-w", "nowhere") == 2
    assert "-w nowhere: no such weights folder" in capsys.readouterr().err
    assert sorted(p.name for p in tiny.iterdir()) == [ini]
    assert n2q(ini, "-test", "-seed", 2, "-test-index", 48) == 2  # 48 test stimuli: 0..47
    assert ("-test-index 48: out of range, the Test partition has 48 stimuli (indices 0..47)"
            in capsys.readouterr().err)
    assert sorted(p.name for p in tiny.iterdir()) == [ini]
    assert n2q(ini, "-test", "-seed", 2) == 0
    assert "unused section [foo]" in capsys.readouterr().err
    assert (tiny / "seed.dat").read_text() == "2"


FUSE_NET = """
[database]
Type=MNIST_IDX_Database

[sp]
SizeX=10
SizeY=10
BatchSize=8

[conv1]
Input=sp
Type=Conv
KernelDims=3 3
NbOutputs=4
NoBias={nobias}
ActivationFunction=Linear

[bn1]
Input=conv1
Type=BatchNorm
NbOutputs=4
ActivationFunction=Rectifier

[fc]
Input=bn1
Type=Fc
NbOutputs=10

[fc.Target]
"""


@pytest.mark.parametrize("nobias", [0, 1])
def test_fold_batchnorm_keeps_outputs(tiny: Path, nobias: int) -> None:
    from n2q.config import load_config
    from n2q.net import build_network
    from n2q.train.fold import fold_batchnorm

    (tiny / "fuse.ini").write_text(FUSE_NET.format(nobias=nobias))
    torch.manual_seed(0)
    net = build_network(load_config(tiny / "fuse.ini"), (1, 10, 10))
    bn = net.cells["bn1"]
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 3.0)
    net.eval()
    x = torch.rand(5, 1, 10, 10)
    before = net(x)["fc"]
    assert fold_batchnorm(net) == ["bn1 folded into conv1"]
    torch.testing.assert_close(net(x)["fc"], before, rtol=1e-5, atol=1e-5)
    assert fold_batchnorm(net) == []  # already folded
    assert net.cells["conv1"].bias is not None  # NoBias=1: the fold adds the bias


def test_qat_sat_workflow_gives_the_fake_quantized_result(tiny: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    """Seed 004's last step: -test -qat-sat tests the integer-only network (same predictions
    as the fake-quantized one on these digits) and writes weights_quantized/."""
    models = Path(__file__).resolve().parent.parent / "models"
    (tiny / "sat.ini").write_text((models / "LeNet_SAT.ini").read_text())
    assert n2q("sat.ini", "-learn-epoch", 1, "-seed", 1) == 0
    capsys.readouterr()
    assert n2q("sat.ini", "-test", "-w", "weights_validation") == 0
    fake = capsys.readouterr().out.split("Final recognition rate: ")[1].split("%")[0]
    assert n2q("sat.ini", "-test", "-qat-sat", "-w", "weights_validation") == 0
    out = capsys.readouterr().out
    assert "'weights_quantized' saved!" in out
    assert out.split("Final recognition rate: ")[1].split("%")[0] == fake
    assert (tiny / "weights_quantized" / "conv1_weights.syntxt").is_file()
    # the comparison fusion.md asks to report, on the stimuli just tested
    check = out.split("fused vs fake-quant: ")[1].splitlines()[0]
    tested = int(check.split("same class on ")[1].split("/")[0])
    assert check.startswith(f"same class on {tested}/{tested} stimuli") and tested > 0
    assert "activations all integers in [0, R]" in check


def test_fuse_option_tests_the_folded_network(tiny: Path, capsys: pytest.CaptureFixture) -> None:
    (tiny / "fuse.ini").write_text(FUSE_NET.format(nobias=1).replace(
        "Type=MNIST_IDX_Database", "Type=MNIST_IDX_Database\nValidation=0.25"))
    assert n2q("fuse.ini", "-learn-epoch", 2, "-seed", 5) == 0
    capsys.readouterr()
    assert n2q("fuse.ini", "-test", "-w", "weights_validation") == 0
    plain = capsys.readouterr().out.split("Final recognition rate: ")[1].split("Time")[0]
    assert n2q("fuse.ini", "-test", "-fuse", "-w", "weights_validation") == 0
    out = capsys.readouterr().out
    assert "-fuse: bn1 folded into conv1" in out
    assert out.split("Final recognition rate: ")[1].split("Time")[0] == plain  # whole block


TWO_TARGETS = "\n[fc2.Target]\nTopN=3\n"


def test_several_targets_and_top_n(tiny: Path, capsys: pytest.CaptureFixture) -> None:
    ini = write_net(tiny)
    (tiny / ini).write_text((tiny / ini).read_text() + TWO_TARGETS)
    assert n2q(ini, "-learn-epoch", 2, "-test", "-seed", 6) == 0
    out = capsys.readouterr().out
    assert "[softmax.Target]" in out and "[fc2.Target]" in out
    top1 = float(out.split("[fc2.Target]")[1].split("Final recognition rate: ")[1].split("%")[0])
    top3 = float(out.split("Top-3 recognition rate: ")[1].split("%")[0])
    assert top3 >= top1
    for folder in ("softmax.Target", "fc2.Target"):
        assert (tiny / folder / "ConfusionMatrix_test.dat").is_file()
        assert (tiny / folder / "Success_validation.dat").is_file()


def test_w_tolerates_missing_files_but_not_wrong_shapes(tiny: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    ini = write_net(tiny)
    assert n2q(ini, "-learn-epoch", 1, "-seed", 8) == 0
    (tiny / "weights_validation" / "fc2_weights.syntxt").unlink()
    capsys.readouterr()
    assert n2q(ini, "-test", "-w", "weights_validation") == 0
    captured = capsys.readouterr()
    assert "fc2" in captured.err and "Final recognition rate" in captured.out
    (tiny / ini).write_text((tiny / ini).read_text().replace("NbOutputs=24", "NbOutputs=20"))
    assert n2q(ini, "-test", "-w", "weights_validation") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fc1" in err[0]
    assert n2q(ini, "-test", "-w", "no_such_folder") == 2
    assert "no such weights folder" in capsys.readouterr().err


MAPPING = """# digits 0-4 -> output 0, 9 is ignored, the others -> output 1
0 0
[1-4] 0
9 -1
default 1
"""


def test_labels_mapping_groups_and_ignores_labels(tiny: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    ini = write_net(tiny)
    text = (tiny / ini).read_text().replace("NbOutputs=10", "NbOutputs=2")
    (tiny / ini).write_text(text.replace("[softmax.Target]",
                                         "[softmax.Target]\nLabelsMapping=mapping.dat"))
    (tiny / "mapping.dat").write_text(MAPPING)
    assert n2q(ini, "-learn-epoch", 2, "-test", "-seed", 9) == 0
    cm = np.loadtxt(tiny / "softmax.Target/ConfusionMatrix_test.dat", skiprows=1)
    assert cm.shape == (4, 4)  # 2 x 2 classes
    labels = read_idx_labels(tiny.parent / "data/mnist/t10k-labels-idx1-ubyte.gz")
    assert cm[:, 2].sum() == (labels != 9).sum()  # the 9s are not scored
    assert cm[cm[:, 0] == 0, 2].sum() == (labels <= 4).sum()
    scores = (tiny / "softmax.Target/ConfusionMatrix_test_score.dat").read_text()
    assert '0 "0,1,2,3,4"' in scores and '1 "5,6,7,8"' in scores


def read_idx_labels(path: Path) -> np.ndarray:
    import gzip

    return np.frombuffer(gzip.decompress(path.read_bytes())[8:], dtype=np.uint8)


@pytest.mark.parametrize("text, create, want", [
    ("a 0\nb* 1\nbee 2\n", False, [0, 1, 2]),        # exact name before pattern
    ("a 0\ndefault -1\n", False, [0, -1, -1]),
    ("a 3\n", True, [3, 4, 5]),                      # missing labels get new outputs
])
def test_read_labels_mapping(tmp_path: Path, text: str, create: bool, want: list[int]) -> None:
    from n2q.train.targets import read_labels_mapping

    (tmp_path / "m.dat").write_text(text)
    got = read_labels_mapping(tmp_path / "m.dat", ["a", "bat", "bee"], create, "t.Target")
    assert got.tolist() == want


@pytest.mark.parametrize("text, message", [
    ("a 0\nb x\n", "m.dat:2: 'b x': write '<label or pattern> <output index>'"),
    ("a -2\n", "m.dat:1:"),
    ("a 0\n", "label 'bat' of the data base has no output"),
])
def test_bad_labels_mapping(tmp_path: Path, text: str, message: str) -> None:
    from n2q.errors import UserError
    from n2q.train.targets import read_labels_mapping

    (tmp_path / "m.dat").write_text(text)
    with pytest.raises(UserError) as error:
        read_labels_mapping(tmp_path / "m.dat", ["a", "bat"], False, "t.Target")
    assert message in str(error.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only fallbacks")
def test_devices_without_cuda(capsys: pytest.CaptureFixture) -> None:
    from n2q.errors import UserError
    from n2q.run import resolve_device

    assert resolve_device("cpu", True) == torch.device("cpu")
    assert resolve_device("0", False) == torch.device("cpu")
    assert capsys.readouterr().err == ""
    assert resolve_device("1", True) == torch.device("cpu")
    assert "no CUDA GPU available, running on the CPU" in capsys.readouterr().err
    with pytest.raises(UserError, match="-dev cuda:0: no CUDA GPU is available here"):
        resolve_device("cuda:0", True)


def test_default_data_type(tiny: Path, capsys: pytest.CaptureFixture) -> None:
    ini = write_net(tiny)
    text = (tiny / ini).read_text()
    (tiny / ini).write_text("DefaultDataType=Float64\n" + text)
    assert n2q(ini, "-learn-epoch", 1, "-test", "-seed", 1) == 0
    assert "Final recognition rate" in capsys.readouterr().out
    (tiny / ini).write_text("DefaultDataType=Float16\n" + text)
    assert n2q(ini, "-learn-epoch", 1) == 2
    assert "Float16 learning needs a GPU" in capsys.readouterr().err
