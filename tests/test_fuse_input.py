"""-qat-fuse feeds the integer network round(255 x): stimuli that are not 8-bit images in
[0, 1] (a Normalize, RangeAffine, DataSignedMapping...) are refused before any work, instead of
fusing a network whose first layer silently loses the normalization."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_tiny_workdir, n2q, write_net

from n2q.config import load_config
from n2q.data import make_provider

SAT = "QWeight=SAT\nQWeight.Range=15\n"
NORMALIZE = "\n[sp.Transformation-1]\nType=RangeAffineTransformation\nFirstOperator=Minus\n" \
            "FirstValue=0.5\n"


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_tiny_workdir(tmp_path, monkeypatch)


def provider(folder: Path, extra: str) -> object:
    ini = write_net(folder)
    with open(folder / ini, "a") as f:
        f.write(extra)
    return make_provider(load_config(folder / ini), seed=1)


@pytest.mark.parametrize("extra, reason", [
    ("", None),
    (NORMALIZE, "[sp.Transformation-1] RangeAffineTransformation gives float stimuli"),
    ("\n[sp.Transformation-1]\nType=NormalizeTransformation\nNorm=MinMax\n",
     "[sp.Transformation-1] NormalizeTransformation gives float stimuli"),
])
def test_float_stimuli_names_the_transformation(tiny: Path, extra: str, reason: str | None
                                                ) -> None:
    assert provider(tiny, extra).float_stimuli("Test") == reason


def test_signed_mapping_is_not_8_bit_input(tiny: Path) -> None:
    ini = write_net(tiny)
    text = (tiny / ini).read_text().replace("BatchSize=16", "BatchSize=16\nDataSignedMapping=1")
    (tiny / ini).write_text(text)
    assert "DataSignedMapping=1" in make_provider(load_config(tiny / ini), 1).float_stimuli()


def test_qat_fuse_refuses_float_stimuli_before_any_work(
        tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = write_net(tiny, common=SAT)
    with open(tiny / ini, "a") as f:
        f.write(NORMALIZE)
    assert n2q(ini, "-learn", "16", "-test", "-qat-fuse", "-seed", "1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RangeAffineTransformation gives float stimuli" in err[0], err
    assert sorted(p.name for p in tiny.iterdir()) == [ini]
