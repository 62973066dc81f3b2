"""Data bases on tiny files written here in the exact on-disk formats, and on the real MNIST."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import (
    cifar_records,
    ini,
    write_cifar10,
    write_dir,
    write_idx,
    write_ilsvrc,
    write_image,
    write_mnist,
)
from PIL import Image

from n2q.config import load_config
from n2q.data import make_provider
from n2q.data.databases import load_all, make_database
from n2q.data.partition import round_half_up
from n2q.errors import UserError

# -- writers of the on-disk formats ------------------------------------------------------------


def database(tmp_path: Path, body: str, seed: int = 1):
    return make_database(load_config(ini(tmp_path, "[database]\n" + body)), seed)


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("N2Q_DATA", str(root))
    return root


# -- common ------------------------------------------------------------------------------------

def test_registry_lists_every_type() -> None:
    assert set(load_all()) == {"MNIST_IDX_Database", "CIFAR10_Database", "CIFAR100_Database",
                               "ILSVRC2012_Database", "DIR_Database"}


@pytest.mark.parametrize(("n", "fraction", "expected"),
                         [(5, 0.5, 3), (8000, 0.8, 6400), (10, 0.35, 4), (3, 0.5, 2),
                          (7, 0.0, 0), (7, 1.0, 7)])
def test_round_half_up(n: int, fraction: float, expected: int) -> None:
    assert round_half_up(n * fraction) == expected


def test_unknown_type_lists_the_types(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        database(tmp_path, "Type=MNIST_Database\n")
    msg = str(err.value)
    assert "net.ini:2: [database] Type:" in msg and "MNIST_IDX_Database" in msg
    assert "DIR_Database" in msg


def test_unknown_key_suggests(tmp_path: Path, data_root: Path) -> None:
    write_mnist(data_root / "mnist")
    with pytest.raises(UserError, match=r"net.ini:3: \[database\] Validaton: unknown key .*"
                       r"did you mean Validation"):
        database(tmp_path, "Type=MNIST_IDX_Database\nValidaton=0.2\n")


# -- MNIST -------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_mnist_partitions_and_pixels(tmp_path: Path, data_root: Path, gz: bool) -> None:
    images, labels = write_mnist(data_root / "mnist", gz=gz)
    db = database(tmp_path, "Type=MNIST_IDX_Database\nValidation=0.2\n")
    assert db.partition_sizes() == {"Learn": 8, "Validation": 2, "Test": 4}
    assert db.labels == [str(i) for i in range(10)]
    learn, val = set(db.partitions["Learn"]), set(db.partitions["Validation"])
    assert learn.isdisjoint(val) and learn | val == set(range(10))
    assert list(db.partitions["Test"]) == [10, 11, 12, 13]
    for i in (0, 7, 12):
        assert db.load(i).shape == (1, 3, 2)
        assert int(db.load(i)[0, 0, 0]) == i and int(db.load(i)[0, 2, 1]) == 200
        assert db.targets[i] == labels[i]
    assert db.name(12).endswith("t10k-images-idx3-ubyte[00002].pgm")


def test_mnist_partition_reproducible_from_seed(tmp_path: Path, data_root: Path) -> None:
    write_mnist(data_root / "mnist", n_train=40)
    body = "Type=MNIST_IDX_Database\nValidation=0.25\n"
    a = database(tmp_path, body, seed=3).partitions["Validation"]
    b = database(tmp_path, body, seed=3).partitions["Validation"]
    c = database(tmp_path, body, seed=4).partitions["Validation"]
    assert list(a) == list(b) and list(a) != list(c)
    ordered = database(tmp_path, body + "RandomPartitioning=0\n").partitions
    assert list(ordered["Learn"]) == list(range(30))
    assert list(ordered["Validation"]) == list(range(30, 40))


def test_mnist_relative_datapath_and_n2d2_alias(tmp_path: Path, monkeypatch) -> None:
    write_mnist(tmp_path / "root" / "digits")
    monkeypatch.setenv("N2D2_DATA", str(tmp_path / "root"))
    db = database(tmp_path, "Type=MNIST_IDX_Database\nDataPath=digits\n")
    assert db.partition_sizes() == {"Learn": 10, "Validation": 0, "Test": 4}


def test_mnist_missing_names_path_and_install_command(tmp_path: Path, data_root: Path) -> None:
    with pytest.raises(UserError) as err:
        database(tmp_path, "Type=MNIST_IDX_Database\n")
    msg = str(err.value)
    assert str(data_root / "mnist") in msg
    assert "python tools/install_datasets.py mnist" in msg
    assert "\n" not in msg


def test_real_mnist_lenet_partitions(test_data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("N2Q_DATA", str(test_data))
    cfg = load_config(ini(tmp_path, "[database]\nType=MNIST_IDX_Database\nValidation=0.2\n"
                          "[sp]\nSizeX=32\nSizeY=32\nBatchSize=128\n"
                          "[sp.Transformation_1]\nType=RescaleTransformation\n"
                          "Width=[sp]SizeX\nHeight=[sp]SizeY\n"))
    sp = make_provider(cfg, seed=1)
    assert sp.partition_sizes() == {"Learn": 6400, "Validation": 1600, "Test": 2000}
    assert cfg.generated[("sp", "_EpochSize")] == 6400
    db = sp.database
    learn, val = db.partitions["Learn"], db.partitions["Validation"]
    assert len(set(learn) | set(val)) == 8000
    # a random 20% draw keeps each digit's share: every class within 25% of its expected count
    train_counts = np.bincount(db.targets[:8000], minlength=10)
    val_counts = np.bincount(db.targets[val], minlength=10)
    expected = train_counts * 0.2
    assert np.all(np.abs(val_counts - expected) < 0.25 * expected)
    assert np.bincount(db.targets[db.partitions["Test"]], minlength=10).min() > 150
    x, y = next(iter(sp.loader("Test", shuffle=False)))
    assert x.shape == (128, 1, 32, 32) and y.dtype.is_floating_point is False
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


# -- CIFAR -------------------------------------------------------------------------------------


def test_cifar10_records_bgr_and_partitions(tmp_path: Path, data_root: Path) -> None:
    images = write_cifar10(data_root / "cifar-10-batches-bin")
    (data_root / "cifar-10-batches-bin" / "batches.meta.txt").write_text(
        "\n".join(f"class{i}" for i in range(10)) + "\n\n")
    db = database(tmp_path, "Type=CIFAR10_Database\nValidation=0.2\n")
    assert db.partition_sizes() == {"Learn": 8, "Validation": 2, "Test": 3}
    assert db.labels[3] == "class3"
    x = db.load(4)  # batch 3, record 0: label (3 + 0) % 10
    assert x.shape == (3, 32, 32) and db.targets[4] == 3
    assert np.array_equal(x[0].numpy(), images[4][2])  # B plane first
    assert np.array_equal(x[2].numpy(), images[4][0])  # R plane last
    assert list(db.partitions["Test"]) == [10, 11, 12]


def test_cifar10_use_test_for_validation(tmp_path: Path, data_root: Path) -> None:
    write_cifar10(data_root / "cifar-10-batches-bin")
    db = database(tmp_path, "Type=CIFAR10_Database\nUseTestForValidation=1\n")
    assert list(db.partitions["Validation"]) == list(db.partitions["Test"]) == [10, 11, 12]
    assert len(db.partitions["Learn"]) == 10
    with pytest.raises(UserError, match="Validation=0"):
        database(tmp_path, "Type=CIFAR10_Database\nUseTestForValidation=1\nValidation=0.1\n")


# (writes a data base, its folder under the data root, its [database] Type)
_DAMAGED = {
    "idx": (write_mnist, "mnist", "MNIST_IDX_Database"),
    "idx.gz": (lambda folder: write_mnist(folder, gz=True), "mnist", "MNIST_IDX_Database"),
    "cifar": (write_cifar10, "cifar-10-batches-bin", "CIFAR10_Database"),
}


@pytest.mark.parametrize(("kind", "file", "damage", "message"), [
    ("idx", "train-images-idx3-ubyte", lambda b: b[:-5],
     r"train-images-idx3-ubyte: truncated IDX file"),
    ("idx", "t10k-labels-idx1-ubyte", lambda b: b"\x1f\x8b\x08\x00" + b[4:],
     r"t10k-labels-idx1-ubyte: not an IDX file \(wrong magic"),
    ("idx.gz", "train-labels-idx1-ubyte.gz", lambda b: b[:-12],
     r"train-labels-idx1-ubyte.gz: cannot read IDX file"),
    ("cifar", "data_batch_2.bin", lambda b: b[:-1],
     r"data_batch_2.bin: truncated CIFAR binary file"),
], ids=["idx-truncated", "idx-wrong-magic", "idx-gzip-truncated", "cifar-truncated"])
def test_damaged_file_named(tmp_path: Path, data_root: Path, kind: str, file: str,
                            damage, message: str) -> None:
    write, folder, db_type = _DAMAGED[kind]
    write(data_root / folder)
    path = data_root / folder / file
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UserError, match=message):
        database(tmp_path, f"Type={db_type}\n")


def test_cifar10_missing_install_hint(tmp_path: Path, data_root: Path) -> None:
    with pytest.raises(UserError, match=r"install_datasets.py cifar-10"):
        database(tmp_path, "Type=CIFAR10_Database\n")


@pytest.mark.parametrize(("coarse", "expected"), [(0, [7, 8, 9]), (1, [1, 2, 3])])
def test_cifar100_fine_and_coarse(tmp_path: Path, data_root: Path, coarse: int,
                                  expected: list[int]) -> None:
    folder = data_root / "cifar-100-binary"
    folder.mkdir()
    train, _ = cifar_records([(1, 7), (2, 8), (3, 9)])
    test, images = cifar_records([(4, 99)], seed=5)
    (folder / "train.bin").write_bytes(train)
    (folder / "test.bin").write_bytes(test)
    db = database(tmp_path, f"Type=CIFAR100_Database\nUseCoarse={coarse}\n"
                  "RandomPartitioning=0\n")
    assert list(db.targets[:3]) == expected
    assert len(db.labels) == (20 if coarse else 100)
    assert db.targets[3] == (4 if coarse else 99)
    assert np.array_equal(db.load(3)[1].numpy(), images[0][1])


# -- image folders -----------------------------------------------------------------------------


def test_ilsvrc2012_partitions_labels(tmp_path: Path, data_root: Path) -> None:
    write_ilsvrc(data_root / "ILSVRC2012")
    db = database(tmp_path, "Type=ILSVRC2012_Database\nLearn=0.5\n"
                  "LabelPath=ILSVRC2012/synsets.txt\n")
    assert db.labels == ["n01", "n02", "n03"]
    assert db.partition_sizes() == {"Learn": 6, "Validation": 3, "Test": 9}
    val = db.partitions["Validation"]
    assert set(val) <= set(db.partitions["Test"])
    assert [db.targets[i] for i in val] == [2, 1, 0]
    assert db.name(int(val[0])).endswith("val/val_0.JPEG")
    x = db.load(0)  # decoded BGR: the file is RGB (0, 1, 2)
    assert x.shape == (3, 4, 6) and x.dtype.is_floating_point is False
    assert abs(int(x[2, 0, 0]) - 0) <= 2 and abs(int(x[0, 0, 0]) - 2) <= 2


def test_ilsvrc2012_background_and_no_val_for_test(tmp_path: Path, data_root: Path) -> None:
    write_ilsvrc(data_root / "ILSVRC2012")
    db = database(tmp_path, "Type=ILSVRC2012_Database\nLearn=1.0\nBackgroundClass=1\n"
                  "UseValidationForTest=0\n")
    assert db.labels[0] == "background" and db.labels[1:] == ["n01", "n02", "n03"]
    assert db.partition_sizes() == {"Learn": 12, "Validation": 3, "Test": 0}
    assert sorted(db.targets[db.partitions["Learn"]]) == [1] * 4 + [2] * 4 + [3] * 4
    assert [db.targets[i] for i in db.partitions["Validation"]] == [3, 2, 1]


def test_ilsvrc2012_requires_learn(tmp_path: Path, data_root: Path) -> None:
    write_ilsvrc(data_root / "ILSVRC2012")
    with pytest.raises(UserError, match=r"missing key Learn"):
        database(tmp_path, "Type=ILSVRC2012_Database\n")


def test_dir_per_label_partitioning(tmp_path: Path, data_root: Path) -> None:
    write_dir(data_root / "shapes", {"a": 4, "b": 6})
    db = database(tmp_path, "Type=DIR_Database\nDataPath=shapes\nLearn=0.5\n"
                  "EquivLabelPartitioning=0\n")
    assert db.labels == ["a", "b"]
    learn = db.targets[db.partitions["Learn"]]
    assert (learn == 0).sum() == 2 and (learn == 1).sum() == 3
    assert db.partition_sizes() == {"Learn": 5, "Validation": 0, "Test": 5}
    assert db.load(0).shape == (1, 4, 6)


def test_dir_equivalent_partitioning(tmp_path: Path, data_root: Path) -> None:
    write_dir(data_root / "shapes", {"a": 4, "b": 6})
    db = database(tmp_path, "Type=DIR_Database\nDataPath=shapes\nLearn=0.5\nValidation=0.25\n")
    for part, per_class in (("Learn", 2), ("Validation", 1)):
        t = db.targets[db.partitions[part]]
        assert (t == 0).sum() == per_class and (t == 1).sum() == per_class
    t = db.targets[db.partitions["Test"]]
    assert (t == 0).sum() == 1 and (t == 1).sum() == 3  # b's leftovers go to Test


def test_dir_absolute_counts(tmp_path: Path, data_root: Path) -> None:
    write_dir(data_root / "shapes", {"a": 4, "b": 6})
    db = database(tmp_path, "Type=DIR_Database\nDataPath=shapes\nPerLabelPartitioning=0\n"
                  "Learn=5\nValidation=3\nRandomPartitioning=0\n")
    assert db.partition_sizes() == {"Learn": 5, "Validation": 3, "Test": 2}
    assert list(db.partitions["Learn"]) == [0, 1, 2, 3, 4]
    with pytest.raises(UserError, match=r"\[database\] Learn: .* holds 10"):
        database(tmp_path, "Type=DIR_Database\nDataPath=shapes\nPerLabelPartitioning=0\n"
                 "Learn=8\nValidation=3\n")


def test_dir_extensions_depth_labels_memory(tmp_path: Path, data_root: Path) -> None:
    root = data_root / "tree"
    write_dir(root / "x", {"p": 2, "q": 2})
    write_image(root / "x" / "p" / "skip.bmp", 1, mode="L")
    write_image(root / "y" / "r" / "0.png", 3, mode="L")
    db = database(tmp_path, "Type=DIR_Database\nDataPath=tree\nDepth=2\nLabelDepth=2\n"
                  "LabelName=top\nValidExtensions=png\nLearn=1\nLoadInMemory=1\n")
    assert db.labels == ["top/x/p", "top/x/q", "top/y/r"]
    assert len(db) == 5
    assert db.batch() is not None and tuple(db.batch().shape) == (5, 1, 4, 6)


def test_dir_depth_too_shallow_finds_nothing(tmp_path: Path, data_root: Path) -> None:
    write_dir(data_root / "tree" / "x", {"p": 2})
    with pytest.raises(UserError, match=r"no image .* Depth=1"):
        database(tmp_path, "Type=DIR_Database\nDataPath=tree\nDepth=1\nLearn=1\n")


def test_dir_missing_folder(tmp_path: Path, data_root: Path) -> None:
    with pytest.raises(UserError, match=r"DataPath: DIR_Database data not found at .*nowhere"):
        database(tmp_path, "Type=DIR_Database\nDataPath=nowhere\nLearn=1\n")


def test_dir_unlabelled_default_label_and_fixed_label(tmp_path: Path, data_root: Path) -> None:
    write_dir(data_root / "loose", {"x": 2, "y": 1})
    db = database(tmp_path, "Type=DIR_Database\nDataPath=loose\nLabelDepth=-1\n"
                  "DefaultLabel=unknown\nLearn=1\n")
    assert db.labels == ["unknown"] and list(db.targets) == [0, 0, 0]
    db = database(tmp_path, "Type=DIR_Database\nDataPath=loose\nLabelDepth=-1\nLearn=1\n")
    assert db.labels == [] and list(db.targets) == [-1, -1, -1]
    db = database(tmp_path, "Type=DIR_Database\nDataPath=loose\nLabelDepth=0\n"
                  "LabelName=digit\nLearn=1\n")
    assert db.labels == ["digit"]


def test_dir_random_per_label_partition_seeded(tmp_path: Path, data_root: Path) -> None:
    write_dir(data_root / "shapes", {"a": 10, "b": 10})
    body = "Type=DIR_Database\nDataPath=shapes\nLearn=0.6\nValidation=0.2\n"
    a = database(tmp_path, body, seed=5).partitions
    b = database(tmp_path, body, seed=5).partitions
    c = database(tmp_path, body, seed=6).partitions
    assert all(list(a[p]) == list(b[p]) for p in a)
    assert set(a["Learn"]) != set(c["Learn"])
    assert {p: len(v) for p, v in a.items()} == {"Learn": 12, "Validation": 4, "Test": 4}
    fixed = database(tmp_path, body + "RandomPartitioning=0\n").partitions
    assert list(fixed["Learn"]) == [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15]


def test_fashion_mnist_install_hint(tmp_path: Path, data_root: Path) -> None:
    with pytest.raises(UserError, match=r"net.ini:3: \[database\] DataPath: .*fashion-mnist/"
                       r"train-images-idx3-ubyte: install it with `python tools/"
                       r"install_datasets.py fashion-mnist`"):
        database(tmp_path, "Type=MNIST_IDX_Database\nDataPath=fashion-mnist\n")


def test_decoded_channels_grey_rgba_cmyk(tmp_path: Path) -> None:
    from n2q.data.images import decode_image

    Image.new("CMYK", (4, 3), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # red
    x = decode_image(tmp_path / "cmyk.jpg")
    assert x.shape == (3, 3, 4) and x[:, 0, 0].tolist() == [0, 0, 255]  # BGR
    Image.new("RGBA", (2, 2), (10, 20, 30, 40)).save(tmp_path / "rgba.png")
    assert decode_image(tmp_path / "rgba.png")[:, 0, 0].tolist() == [30, 20, 10, 40]  # BGRA
    Image.new("L", (2, 2), 9).save(tmp_path / "grey.bmp")  # through Pillow
    assert decode_image(tmp_path / "grey.bmp").shape == (1, 2, 2)
    Image.new("RGB", (2, 2), (1, 2, 3)).save(tmp_path / "c.ppm")
    assert decode_image(tmp_path / "c.ppm")[:, 0, 0].tolist() == [3, 2, 1]
    (tmp_path / "bad.bmp").write_bytes(b"BM not an image")
    with pytest.raises(UserError, match=r"bad.bmp: unreadable image"):
        decode_image(tmp_path / "bad.bmp")


def test_sixteen_bit_png_maps_to_unit_range(tmp_path: Path) -> None:
    from n2q.data.images import decode_image

    Image.fromarray(np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)).save(
        tmp_path / "deep.png")
    x = decode_image(tmp_path / "deep.png")
    assert x.dtype.is_floating_point and x.shape == (1, 2, 2)
    assert x[0].flatten().tolist() == pytest.approx([0.0, 1.0, 32768 / 65535, 1000 / 65535])


@pytest.mark.parametrize(("body", "key", "value"), [
    ("Type=MNIST_IDX_Database\nValidation=1.5\n", "Validation", "1.5"),
    ("Type=CIFAR10_Database\nValidation=-0.1\n", "Validation", "-0.1"),
    ("Type=ILSVRC2012_Database\nLearn=2\n", "Learn", "2.0"),
    ("Type=DIR_Database\nDataPath=shapes\nLearn=0.5\nTest=1.25\n", "Test", "1.25"),
])
def test_fraction_outside_0_1_refused(tmp_path: Path, data_root: Path, body: str, key: str,
                                      value: str) -> None:
    write_mnist(data_root / "mnist")
    write_cifar10(data_root / "cifar-10-batches-bin")
    write_ilsvrc(data_root / "ILSVRC2012")
    write_dir(data_root / "shapes", {"a": 2, "b": 2})
    with pytest.raises(UserError, match=rf"\[database\] {key}: {value} is not a fraction in "
                                        r"\[0, 1\]"):
        database(tmp_path, body)


def test_mnist_label_out_of_range_names_its_file(tmp_path: Path, data_root: Path) -> None:
    write_mnist(data_root / "mnist")
    labels = np.zeros(10, dtype=np.uint8)
    labels[3] = 10  # one digit class too many
    write_idx(data_root / "mnist" / "train-labels-idx1-ubyte", labels)
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte.*labels outside 0..9"):
        database(tmp_path, "Type=MNIST_IDX_Database\n")


def test_cifar10_label_out_of_range_names_its_file(tmp_path: Path, data_root: Path) -> None:
    folder = data_root / "cifar-10-batches-bin"
    write_cifar10(folder)
    (folder / "data_batch_3.bin").write_bytes(cifar_records([(4,), (10,)])[0])  # 10: no class
    with pytest.raises(UserError, match=r"data_batch_3.bin: label 10 out of range \(0..9\)"):
        database(tmp_path, "Type=CIFAR10_Database\n")
