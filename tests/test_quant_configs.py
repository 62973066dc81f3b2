"""configs/: the LeNet recipes build as written, follow seed 004, and configs/README.md names
only files and options that exist (the ONNX recipes are checked in test_onnx_quant.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from n2q.cli import parse_args
from n2q.config import load_config
from n2q.data.provider import StimuliProvider
from n2q.net.graph import build_network
from n2q.train.solvers import check_network_solvers

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
README = (CONFIGS / "README.md").read_text()
LENET = ["LeNet_SAT_clamp.ini", "LeNet_SAT_W4A4.ini", "LeNet_LSQ_NNI.ini"]


def _build(name: str):
    cfg = load_config(CONFIGS / name)
    provider = "env" if "env" in cfg else "sp"
    net = build_network(cfg, StimuliProvider._read_size(cfg[provider]))
    check_network_solvers(net)
    return net


def _quantizers(net) -> dict[str, tuple]:
    """{cell: (QWeight name, range, clamp?, scaling?, QAct name, range, alpha)} (None if absent)."""
    out = {}
    for name, cell in net.cells.items():
        wq, aq = cell.weight_quantizer, cell.act_quantizer
        out[name] = (
            wq and (wq.NAME, wq.range, getattr(wq, "apply_quantization", None),
                    getattr(wq, "apply_scaling", None)),
            aq and (aq.NAME, aq.range, float(aq.alpha.detach()) if hasattr(aq, "alpha") else None))
    return {k: v for k, v in out.items() if v != (None, None)}


def test_sat_clamp_phase_as_in_the_seed():
    net = _build("LeNet_SAT_clamp.ini")
    assert _quantizers(net) == {
        "conv1": (("SAT", 255, False, False), None), "conv2": (("SAT", 255, False, False), None),
        "conv3": (("SAT", 255, False, False), None), "fc1": (("SAT", 255, False, True), None),
        "fc2": (("SAT", 255, False, True), None)}
    assert [type(net.cells[f"bn{i}"].activation).__name__ for i in (1, 2, 3)] == ["Rectifier"] * 3


def test_sat_w4a4_as_in_the_seed():
    net = _build("LeNet_SAT_W4A4.ini")
    bn = (None, ("SAT", 15, 6.0))       # the seed's QAct.Alpha=6.0, 4-bit
    assert _quantizers(net) == {
        "conv1": (("SAT", 255, True, False), None), "bn1": bn,
        "conv2": (("SAT", 15, True, False), None), "bn2": bn,
        "conv3": (("SAT", 15, True, False), None), "bn3": bn,
        "fc1": (("SAT", 15, True, True), None), "fc2": (("SAT", 255, True, True), None)}
    assert type(net.cells["bn1"].activation).__name__ == "Linear"   # the quantizer clips


def test_sat_configs_name_the_provider_env_and_differ_only_in_quantization():
    clamp, w4a4 = (load_config(CONFIGS / n) for n in LENET[:2])
    for cfg in (clamp, w4a4):
        assert "env" in cfg and "sp" not in cfg
        assert cfg["env"].int("BatchSize") == 256 and cfg["conv1"].str("Input") == "env"
        assert cfg["common.config"].float("Solvers.LearningRate") == 0.05
    assert [s.name for s in clamp.sections] == [s.name for s in w4a4.sections]


def test_lsq_nni_recipe():
    net = _build("LeNet_LSQ_NNI.ini")
    assert _quantizers(net) == {
        "conv1": (("LSQ", 255, None, None), ("LSQ", 255, None)),
        "conv2": (("LSQ", 255, None, None), ("LSQ", 255, None)),
        "fc1": (("LSQ", 255, None, None), ("LSQ", 255, None)),
        "fc2": (("LSQ", 255, None, None), None)}
    variants = {q.variant for _, cell in net.cells.items()
                for q in (cell.weight_quantizer, cell.act_quantizer) if q is not None}
    assert variants == {"NNI"}
    assert (net.cells["conv1"].act_quantizer.qn, net.cells["conv1"].act_quantizer.qp) == (-128, 127)


def _readme_commands() -> list[list[str]]:
    blocks = re.findall(r"```\n(.*?)```", README, re.S)
    lines = [ln.split("#")[0].strip() for b in blocks for ln in b.splitlines()]
    return [shlex.split(ln) for ln in lines if ln.startswith("n2q ")]


def _table_files() -> set[str]:
    """The .ini files named in the first column of the tables: `a_W1.ini`, `_W2.ini` stands
    for a_W1.ini and a_W2.ini."""
    named = set()
    for cell in re.findall(r"^\| ((?:`[\w.-]+\.ini`(?:, )?)+) \|", README, re.M):
        files = re.findall(r"`([\w.-]+\.ini)`", cell)
        stem = files[0].rsplit("_", 1)[0]
        named.update(f if not f.startswith("_") else stem + f for f in files)
    return named


def test_readme_lists_every_config_and_only_existing_ones():
    named = _table_files()
    on_disk = {p.name for p in CONFIGS.glob("*.ini")}
    assert named == on_disk


@pytest.mark.parametrize("command", _readme_commands(), ids=lambda c: " ".join(c[1:3]))
def test_readme_commands_parse_and_name_existing_files(command):
    assert command[1].startswith("configs/") and (CONFIGS.parent / command[1]).is_file()
    parse_args(command[1:])     # every option exists and takes the value given


def test_readme_copies_the_clamped_weights_between_the_two_sat_steps():
    lenet = re.search(r"## SAT on LeNet.*?```\n(.*?)```", README, re.S).group(1).splitlines()
    assert lenet[0].startswith("n2q configs/LeNet_SAT_clamp.ini")
    assert lenet[1] == "cp -r weights_validation weights_clamped"
    assert lenet[2].startswith("n2q configs/LeNet_SAT_W4A4.ini")
    assert "-w weights_clamped" in lenet[2]
