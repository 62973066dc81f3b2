"""spec/ini.md, global keys: DefaultModel, DefaultDataType, InsertBatchNormAfterConv,
CheckWeightRange, read by ``read_globals``."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from n2q.config import GlobalSettings, load_config, read_globals
from n2q.errors import UserError


def globals_of(tmp_path: Path, text: str) -> GlobalSettings:
    path = tmp_path / "net.ini"
    path.write_text(text + "\n[sp]\nSizeX=1\n", encoding="utf-8")
    return read_globals(load_config(path))


def test_defaults(tmp_path: Path) -> None:
    g = globals_of(tmp_path, "")
    assert g == GlobalSettings(default_model="Frame", use_gpu=False, dtype="float32",
                               insert_batchnorm_after_conv=False, check_weight_range=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.use_gpu = True  # type: ignore[misc]


@pytest.mark.parametrize(("model", "gpu"), [
    ("Frame", False), ("Frame_CUDA", True), ("Transcode", False), ("Transcode_CUDA", True),
    ("Frame_EXT_CUDA", True), ("SomethingNew", False),
])
def test_default_model_never_fails_except_spiking(tmp_path: Path, model: str,
                                                  gpu: bool) -> None:
    g = globals_of(tmp_path, f"DefaultModel={model}")
    assert (g.default_model, g.use_gpu) == (model, gpu)


@pytest.mark.parametrize("model", ["Spike", "Spike_Analog", "Spike_PCM", "Spike_RRAM",
                                   "Spike_CUDA"])
def test_spiking_models_are_refused(tmp_path: Path, model: str) -> None:
    with pytest.raises(UserError, match="^" + re.escape(
            f"{tmp_path / 'net.ini'}:1: DefaultModel: spiking models are not supported "
            f"({model})")):
        globals_of(tmp_path, f"DefaultModel={model}")


@pytest.mark.parametrize(("name", "dtype"), [("Float32", "float32"), ("Float16", "float16"),
                                             ("Float64", "float64")])
def test_data_type(tmp_path: Path, name: str, dtype: str) -> None:
    assert globals_of(tmp_path, f"DefaultDataType={name}").dtype == dtype
    import torch

    assert isinstance(getattr(torch, dtype), torch.dtype)  # a real torch dtype name


def test_bad_data_type_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r":1: DefaultDataType: unknown value 'Int8'; valid: "
                                        r"Float32, Float16, Float64$"):
        globals_of(tmp_path, "DefaultDataType=Int8")


def test_flags(tmp_path: Path) -> None:
    g = globals_of(tmp_path, "InsertBatchNormAfterConv=1\nCheckWeightRange=0")
    assert g.insert_batchnorm_after_conv is True
    assert g.check_weight_range is False


def test_unknown_global_key(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r":2: DefaultModl: unknown key for the global section "
                                        r"\(did you mean DefaultModel\?\)$"):
        globals_of(tmp_path, "$X=1\nDefaultModl=Frame")


def test_variables_in_global_keys(tmp_path: Path) -> None:
    g = globals_of(tmp_path, "$MODEL=Frame_CUDA\nDefaultModel=${MODEL}")
    assert g.use_gpu is True
