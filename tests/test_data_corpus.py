"""Every [database]/[sp] of N2D2's INI corpus, on tiny data written in each data base's format:
the provider builds and yields stimuli of [sp]'s size, or stops with the expected clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import cifar_records, write_cifar10, write_ilsvrc, write_mnist

from n2q.config import load_config
from n2q.data import make_provider
from n2q.errors import UserError

CORPUS = Path(os.environ.get("N2Q_TEST_REFERENCE", "/nonexistent")) / "n2d2-models"
INIS = sorted(p.relative_to(CORPUS).as_posix() for p in CORPUS.glob("**/*.ini")) if (
    CORPUS.is_dir()) else []

SPIKING = r"\[env\] StimulusType: spiking models are not supported by n2q"
# what N2D2's files contain that n2q refuses, and why
EXPECTED_ERRORS = {
    "GTSRB29_32c4s1_32mp2_48c5s1_48mp3_200_43.ini": r"unknown value 'GTSRB_DIR_Database'",
    "n-mnist-stdp.ini": r"unknown value 'N_MNIST_Database'",
    "IMDBWIKI.ini": r"CompositeStimuli: composite stimuli",
    "IMDBWIKI_FasterRCNN.ini": r"CompositeStimuli: composite stimuli",
    # spiking models: their provider is [env] with spike coding keys
    "LeNet_Spike.ini": SPIKING,
    "mnist-stdp.ini": SPIKING,
    "mnist-stdp-ijcnn.ini": SPIKING,
    "mnist24_16c4s2_24c5s2_150_10_Spike.ini": SPIKING,
    "ResNet-18-BN.ini": r"ResNet-18-BN.ini:\d+: \[.*\] .*: refers to \[sp\] but there is no "
                        r"\[sp\] section",
    # VGG16.ini slices Learn and Test to 224 but leaves Validation at 256x256
    "VGG16.ini": r"VGG16.ini:59: \[sp.Transformation-2\] stimuli come out of this "
                 r"transformation as 256x256x3 .* \(Validation partition\)",
}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_mnist(root / "mnist", n_train=10, n_test=4, h=28, w=28)
    write_cifar10(root / "cifar-10-batches-bin")
    folder = root / "cifar-100-binary"
    folder.mkdir()
    folder.joinpath("train.bin").write_bytes(cifar_records([(i % 20, i) for i in range(10)])[0])
    folder.joinpath("test.bin").write_bytes(cifar_records([(1, 2), (3, 4)])[0])
    write_ilsvrc(root / "ILSVRC2012", per_class=2)
    return root


@pytest.mark.skipif(not INIS, reason="N2D2 corpus not available: set N2Q_TEST_REFERENCE")
@pytest.mark.parametrize("name", INIS)
def test_corpus_provider(name: str, tiny_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("N2Q_DATA", str(tiny_root))
    cfg = load_config(CORPUS / name)
    if "database" not in cfg:
        pytest.skip("no [database]")
    expected = EXPECTED_ERRORS.get(Path(name).name)
    if expected:
        with pytest.raises(UserError, match=expected):
            sp = make_provider(cfg, 1)
            for partition, n in sp.partition_sizes().items():
                if n:
                    next(iter(sp.loader(partition, shuffle=False, limit=1, num_workers=0)))
        return
    sp = make_provider(cfg, 1)
    # every frame model of the corpus writes [sp]: its [env]-only files are the spiking ones
    # (EXPECTED_ERRORS); [env] as a frame provider is test_data_provider.py's
    assert sp.name == "sp"
    assert cfg.generated[("sp", "_EpochSize")] == sp.partition_sizes()["Learn"]
    for partition, n in sp.partition_sizes().items():
        if n:
            x, y = next(iter(sp.loader(partition, shuffle=True, limit=1, num_workers=0)))
            assert tuple(x.shape[1:]) == sp.size and len(y) == len(x)
