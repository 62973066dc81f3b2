"""The stimuli provider: ordering rule, ApplyTo, StimuliData, seeding, size checks, caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ini, write_cifar10, write_dir, write_mnist
from PIL import Image

from n2q.config import load_config
from n2q.data import make_provider
from n2q.errors import UserError

MNIST = "[database]\nType=MNIST_IDX_Database\nValidation=0.2\n"


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("N2Q_DATA", str(root))
    return root


@pytest.fixture
def mnist(data_root: Path) -> np.ndarray:
    images, _ = write_mnist(data_root / "mnist", n_train=20, n_test=6, h=4, w=3)
    return images


def provider(tmp_path: Path, text: str, seed: int = 1, name: str = "net.ini"):
    cfg = load_config(ini(tmp_path, text, name))
    return make_provider(cfg, seed), cfg


def all_of(sp, partition: str, **kw) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ys, ids = zip(*sp.loader(partition, with_ids=True, **kw), strict=True)
    return torch.cat(xs), torch.cat(ys), torch.cat(ids)


def test_basic_batches_and_implicit_mapping(tmp_path: Path, mnist: np.ndarray) -> None:
    sp, cfg = provider(tmp_path, MNIST + "[sp]\nSizeX=3\nSizeY=4\nBatchSize=3\n")
    assert sp.size == (1, 4, 3) and sp.batch_size == 3 and sp.nb_classes == 10
    assert cfg.generated[("sp", "_EpochSize")] == 16
    batches = sp.loader("Test", shuffle=False)
    assert len(batches) == 2
    x, y, ids = all_of(sp, "Test", shuffle=False)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert ids.tolist() == list(range(20, 26))
    # 8-bit data maps to [0, 1]: x = pixel / 255
    assert torch.equal(x[:, 0], torch.from_numpy(mnist[20:]).float() / 255)
    assert y.tolist() == [i % 10 for i in range(20, 26)]
    assert len(sp.loader("Learn", shuffle=True, drop_last=True)) == 5
    assert sum(len(b[0]) for b in sp.loader("Learn", shuffle=True, limit=7)) == 7


def test_signed_mapping_and_quantization(tmp_path: Path, mnist: np.ndarray) -> None:
    sp, _ = provider(tmp_path, MNIST + "[sp]\nSizeX=3\nSizeY=4\nDataSignedMapping=1\n")
    x, _, ids = all_of(sp, "Test", shuffle=False)
    assert torch.allclose(x[:, 0], torch.from_numpy(mnist[20:]).float() / 255 * 2 - 1)
    sp, _ = provider(tmp_path, MNIST + "[sp]\nSizeX=3\nSizeY=4\nQuantizationLevels=3\n")
    x, _, _ = all_of(sp, "Test", shuffle=False)
    assert set(x.unique().tolist()) <= {0.0, 0.5, 1.0}
    assert float(x[0, 0, 3, 2]) == 1.0  # 200/255 = 0.78 -> level 2 of {0, 0.5, 1}


def test_size_key_and_sp_errors(tmp_path: Path, mnist: np.ndarray) -> None:
    sp, _ = provider(tmp_path, MNIST + "[sp]\nSize=3 4 1\n")
    assert sp.size == (1, 4, 3)
    with pytest.raises(UserError, match=r"net.ini:6: \[sp\] BatchSzie: unknown key for the "
                       r"stimuli provider \(did you mean BatchSize\?\)"):
        provider(tmp_path, MNIST + "[sp]\nSize=3 4\nBatchSzie=2\n")
    with pytest.raises(UserError, match=r"\[sp\] CompositeStimuli: composite stimuli"):
        provider(tmp_path, MNIST + "[sp]\nSize=3 4\nCompositeStimuli=1\n")
    with pytest.raises(UserError, match=r"\[sp\] Size: give either"):
        provider(tmp_path, MNIST + "[sp]\nSize=3 4\nSizeX=3\n")


def test_final_size_check_names_the_transformation(tmp_path: Path, mnist: np.ndarray) -> None:
    text = (MNIST + "[sp]\nSizeX=5\nSizeY=5\n"
            "[sp.Transformation-1]\nType=RescaleTransformation\nWidth=6\nHeight=5\n"
            "[sp.Transformation-2]\nType=FlipTransformation\nHorizontalFlip=1\n")
    sp, _ = provider(tmp_path, text)
    with pytest.raises(UserError, match=r"net.ini:7: \[sp.Transformation-1\] stimuli come out of "
                       r"this transformation as 6x5x1 .* expects .* 5x5x1"):
        next(iter(sp.loader("Learn", shuffle=False)))
    sp, _ = provider(tmp_path, MNIST + "[sp]\nSizeX=5\nSizeY=5\n")
    with pytest.raises(UserError, match=r"\[sp\] the MNIST_IDX_Database stimuli are 3x4x1"):
        next(iter(sp.loader("Test", shuffle=False)))


def test_ordering_cacheable_then_on_the_fly(tmp_path: Path, mnist: np.ndarray) -> None:
    # written on-the-fly first: still applied after the cacheable one: (x + 1) * 2, not x*2 + 1
    text = (MNIST + "[sp]\nSizeX=3\nSizeY=4\n"
            "[sp.OnTheFlyTransformation-a]\nType=RangeAffineTransformation\n"
            "FirstOperator=Multiplies\nFirstValue=2\n"
            "[sp.Transformation-b]\nType=RangeAffineTransformation\nFirstValue=1\n"
            "[sp.Transformation-c]\nType=RangeAffineTransformation\nFirstOperator=Minus\n"
            "FirstValue=3\n")
    sp, _ = provider(tmp_path, text)
    x, _, _ = all_of(sp, "Test", shuffle=False)
    expected = (torch.from_numpy(mnist[20:]).float() + 1 - 3) * 2
    assert torch.equal(x[:, 0], expected)  # float output: no implicit /255


def test_apply_to_filters_partitions(tmp_path: Path, mnist: np.ndarray) -> None:
    text = MNIST + "[sp]\nSizeX=3\nSizeY=4\n"
    for apply_to, touched in (("LearnOnly", {"Learn"}), ("NoLearn", {"Validation", "Test"}),
                              ("ValidationOnly", {"Validation"}), ("TestOnly", {"Test"}),
                              ("NoValidation", {"Learn", "Test"}),
                              ("NoTest", {"Learn", "Validation"}),
                              ("All", {"Learn", "Validation", "Test"})):
        sp, _ = provider(tmp_path, text + "[sp.Transformation-1]\nType=FlipTransformation\n"
                         f"VerticalFlip=1\nApplyTo={apply_to}\n")
        for partition in ("Learn", "Validation", "Test"):
            x, _, ids = all_of(sp, partition, shuffle=False)
            raw = torch.from_numpy(mnist[ids.numpy()]).float() / 255
            flipped = not torch.equal(x[:, 0], raw)
            assert flipped == (partition in touched), (apply_to, partition)
            if flipped:
                assert torch.equal(x[:, 0], raw.flip(1))


def test_stimuli_data_published_before_use(tmp_path: Path, data_root: Path) -> None:
    images = write_cifar10(data_root / "cifar-10-batches-bin")
    text = ("[database]\nType=CIFAR10_Database\nValidation=0.2\n"
            "[sp]\nSizeX=32\nSizeY=32\nNbChannels=3\nBatchSize=4\n"
            "[sp.StimuliData-normalize]\nApplyTo=LearnOnly\n"
            "[sp.Transformation-normalize]\nType=RangeAffineTransformation\n"
            "FirstOperator=Minus\nFirstValue=[sp.StimuliData-normalize]_GlobalValue.mean\n"
            "SecondOperator=Divides\n"
            "SecondValue=[sp.StimuliData-normalize]_GlobalValue.stdDev\n")
    sp, cfg = provider(tmp_path, text)
    learn_ids = sp.partition_ids("Learn")
    values = images[learn_ids].astype(np.float64)
    stats = sp.stimuli_data["sp.StimuliData-normalize"]
    assert stats["mean"] == pytest.approx(values.mean())
    assert stats["stdDev"] == pytest.approx(values.std())
    assert (stats["minVal"], stats["maxVal"]) == (values.min(), values.max())
    assert cfg.generated[("sp.StimuliData-normalize", "_GlobalValue.mean")] == stats["mean"]
    x, _, _ = all_of(sp, "Learn", shuffle=False)
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(x.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)


def test_stimuli_data_after_transformations_on_files(tmp_path: Path, data_root: Path) -> None:
    write_dir(data_root / "shapes", {"a": 3, "b": 3})  # grey images, pixel value = file index
    text = ("[database]\nType=DIR_Database\nDataPath=shapes\nLearn=1\n"
            "[sp]\nSizeX=6\nSizeY=4\n"
            "[sp.Transformation-1]\nType=RangeAffineTransformation\nFirstValue=10\n"
            "[sp.StimuliData-x]\n")
    sp, cfg = provider(tmp_path, text)
    # values 10 + {0, 1, 2} twice: mean 11, population std sqrt(2/3)
    assert cfg.generated[("sp.StimuliData-x", "_GlobalValue.mean")] == pytest.approx(11.0)
    assert cfg.generated[("sp.StimuliData-x", "_GlobalValue.stdDev")] == pytest.approx(
        (2 / 3) ** 0.5)
    assert cfg.generated[("sp.StimuliData-x", "_GlobalValue.maxVal")] == 12.0


def random_chain(extra: str = "") -> str:
    return (MNIST + "[sp]\nSizeX=2\nSizeY=2\nBatchSize=4\n"
            "[sp.OnTheFlyTransformation-1]\nType=SliceExtractionTransformation\n"
            "Width=2\nHeight=2\nRandomOffsetX=1\nRandomOffsetY=1\n"
            "[sp.OnTheFlyTransformation-2]\nType=FlipTransformation\nRandomHorizontalFlip=1\n"
            + extra)


def test_random_transformations_seeded(tmp_path: Path, mnist: np.ndarray) -> None:
    sp, _ = provider(tmp_path, random_chain())
    a = all_of(sp, "Learn", shuffle=True, epoch=3, num_workers=0)
    b = all_of(sp, "Learn", shuffle=True, epoch=3, num_workers=2)  # workers: same stimuli
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    sp2, _ = provider(tmp_path, random_chain())  # a new run with the same seed
    c = all_of(sp2, "Learn", shuffle=True, epoch=3, num_workers=0)
    assert all(torch.equal(u, v) for u, v in zip(a, c, strict=True))
    d = all_of(sp, "Learn", shuffle=True, epoch=4, num_workers=0)
    assert not torch.equal(a[2], d[2])  # another epoch: another order
    # and other crops/flips of the same stimuli
    order = torch.argsort(a[2])
    order_d = torch.argsort(d[2])
    assert not torch.equal(a[0][order], d[0][order_d])
    sp3, _ = provider(tmp_path, random_chain(), seed=2)
    assert sorted(sp3.partition_ids("Learn")) != sorted(sp.partition_ids("Learn"))


def test_channel_transformation(tmp_path: Path, data_root: Path) -> None:
    folder = data_root / "colour" / "a"
    folder.mkdir(parents=True)
    Image.new("RGB", (4, 3), (200, 20, 10)).save(folder / "0.png")  # BGR (10, 20, 200)
    text = ("[database]\nType=DIR_Database\nDataPath=colour\nLearn=1\n"
            "[sp]\nSizeX=4\nSizeY=3\nNbChannels=3\n"
            "[sp.ChannelTransformation-r]\nChannel=2\nType=RangeAffineTransformation\n"
            "FirstOperator=Multiplies\nFirstValue=0.5\n")
    sp, _ = provider(tmp_path, text)
    x, _, _ = all_of(sp, "Learn", shuffle=False)
    # channels 0 and 1 untouched (8-bit, mapped /255); channel 2 float 200 * 0.5: the
    # stimulus became float, so nothing implicit happens to any channel
    assert x[0, :, 0, 0].tolist() == [10.0, 20.0, 100.0]
    with pytest.raises(UserError, match=r"Channel: -1 is not a channel index"):
        provider(tmp_path, text.replace("Channel=2", "Channel=-1"))


def test_unreadable_image_in_worker_is_a_user_error(tmp_path: Path, data_root: Path) -> None:
    write_dir(data_root / "shapes", {"a": 6})
    bad = data_root / "shapes" / "a" / "3.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    text = ("[database]\nType=DIR_Database\nDataPath=shapes\nLearn=1\n"
            "[sp]\nSizeX=6\nSizeY=4\nBatchSize=2\n")
    sp, _ = provider(tmp_path, text)
    with pytest.raises(UserError) as err:
        list(sp.loader("Learn", shuffle=False, num_workers=2))
    msg = str(err.value)
    assert msg.startswith(str(bad)) and "unreadable image" in msg and "\n" not in msg


def test_cache_path_reuses_deterministic_chain(tmp_path: Path, data_root: Path) -> None:
    write_dir(data_root / "shapes", {"a": 3, "b": 2})
    cache = tmp_path / "cache"
    text = ("[database]\nType=DIR_Database\nDataPath=shapes\nLearn=1\n"
            "EquivLabelPartitioning=0\n"
            f"[sp]\nSizeX=3\nSizeY=2\nCachePath={cache}\n"
            "[sp.Transformation-1]\nType=RescaleTransformation\nWidth=3\nHeight=2\n"
            "[sp.OnTheFlyTransformation-2]\nType=FlipTransformation\nRandomVerticalFlip=1\n")
    sp, _ = provider(tmp_path, text)
    first = all_of(sp, "Learn", shuffle=False, num_workers=0)
    files = sorted(cache.rglob("*.npy"))
    assert len(files) == 5
    # the cache holds the Rescale output (8-bit), not the random flips
    cached = np.load(files[0])
    assert cached.dtype == np.uint8 and cached.shape == (1, 2, 3)
    for f in files:  # poison the cache: a second provider must read it, not recompute
        np.save(f, np.full((1, 2, 3), 255, np.uint8))
    sp2, _ = provider(tmp_path, text)
    second = all_of(sp2, "Learn", shuffle=False, num_workers=0)
    assert torch.equal(first[2], second[2])
    assert torch.all(second[0] == 1.0)


def test_lenet_pipeline_on_real_mnist(test_data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("N2Q_DATA", str(test_data))
    sp, cfg = provider(tmp_path, "[database]\nType=MNIST_IDX_Database\nValidation=0.2\n"
                       "[sp]\nSizeX=32\nSizeY=32\nBatchSize=128\n"
                       "[sp.Transformation_1]\nType=RescaleTransformation\n"
                       "Width=[sp]SizeX\nHeight=[sp]SizeY\n")
    x, y, ids = all_of(sp, "Learn", shuffle=True, epoch=0)
    assert x.shape == (6400, 1, 32, 32) and len(set(ids.tolist())) == 6400
    # the digit's ink survives the 28 -> 32 rescale: mean intensity close to the raw one
    raw = sp.database.images[ids[:200]].float() / 255
    assert abs(float(x[:200].mean()) - float(raw.mean())) < 0.01
    assert sp.stimulus_name(int(ids[0])).startswith(str(test_data / "mnist"))


def test_indices_repeats_and_replay(tmp_path: Path, mnist: np.ndarray) -> None:
    sp, _ = provider(tmp_path, MNIST + "[sp]\nSizeX=3\nSizeY=4\nBatchSize=4\n")
    batches = sp.loader("Test", shuffle=False, indices=[5, 0, 5], with_ids=True)
    first = [b[2].tolist() for b in batches]
    assert first == [[25, 20, 25]]
    assert [b[2].tolist() for b in batches] == first  # iterating again replays the batches
    with pytest.raises(UserError, match="out of range"):
        sp.loader("Test", shuffle=False, indices=[6])


def test_lenet_mnist_bit_exact_with_n2d2(reference: Path, test_data: Path, monkeypatch) -> None:
    """With N2D2's own LeNet weights, the 8-bit OpenCV-exact Rescale makes n2q misclassify
    exactly the 55 test digits N2D2 listed in Misclassified_test.dat (float bilinear + round
    instead gives 56 errors: 97.20% instead of N2D2's 97.25%)."""
    from n2q.io.weights import load_weights
    from n2q.net import build_network

    monkeypatch.setenv("N2Q_DATA", str(test_data))
    cfg = load_config(reference / "n2d2-models" / "LeNet.ini")
    sp = make_provider(cfg, seed=1)
    net = build_network(cfg, sp.size)
    load_weights(net, reference / "n2d2-run-LeNet" / "weights_validation")
    net.eval()
    wrong = set()
    with torch.no_grad():
        for x, y, ids in sp.loader("Test", shuffle=False, with_ids=True):
            predicted = net(x)["softmax"].flatten(1).argmax(1)
            wrong |= {int(i) for i in ids[predicted != y]}
    listing = reference / "n2d2-run-LeNet" / "softmax.Target" / "Misclassified_test.dat"
    theirs = {int(line.split()[0]) for line in listing.read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert wrong == theirs
    name = sp.stimulus_name(8089)
    assert name.endswith("mnist/t10k-images-idx3-ubyte[00089].pgm")  # N2D2's naming


def test_cache_entry_refreshed_when_image_changes(tmp_path: Path, data_root: Path) -> None:
    import os

    write_dir(data_root / "shapes", {"a": 1})
    cache = tmp_path / "cache"
    text = ("[database]\nType=DIR_Database\nDataPath=shapes\nLearn=1\n"
            f"[sp]\nSizeX=6\nSizeY=4\nCachePath={cache}\n"
            "[sp.Transformation-1]\nType=FlipTransformation\nHorizontalFlip=1\n")
    sp, _ = provider(tmp_path, text)
    all_of(sp, "Learn", shuffle=False, num_workers=0)
    (entry,) = cache.rglob("*.npy")
    Image.new("L", (6, 4), 77).save(data_root / "shapes" / "a" / "0.png")
    later = entry.stat().st_mtime + 10
    os.utime(data_root / "shapes" / "a" / "0.png", (later, later))
    sp2, _ = provider(tmp_path, text)
    x, _, _ = all_of(sp2, "Learn", shuffle=False, num_workers=0)
    assert torch.all(x == 77 / 255)


ENV = "[env]\nSizeX=3\nSizeY=4\nBatchSize=3\n"


def test_env_section_is_the_provider_of_frame_models(tmp_path: Path, mnist: np.ndarray) -> None:
    # seed 004's LeNet: [env] (SizeX/SizeY/BatchSize), no [sp]; make_provider finds it itself
    text = (MNIST + ENV + "[env.Transformation-1]\nType=FlipTransformation\nVerticalFlip=1\n"
            "[c]\nSteps=$([sp]_EpochSize * 2)\nOther=[env]_EpochSize\n")
    sp, cfg = provider(tmp_path, text)
    assert sp.name == "env" and sp.size == (1, 4, 3) and sp.batch_size == 3
    x, _, ids = all_of(sp, "Test", shuffle=False)
    assert torch.equal(x[:, 0], torch.from_numpy(mnist[ids.numpy()]).float().flip(1) / 255)
    # 16 learn stimuli (20 train, Validation=0.2); both provider names resolve
    assert cfg["c"].int("Steps") == 32 and cfg["c"].int("Other") == 16
    # with both sections, [sp] is the provider
    sp, _ = provider(tmp_path, MNIST + "[sp]\nSizeX=3\nSizeY=4\nBatchSize=2\n" + ENV)
    assert sp.name == "sp" and sp.batch_size == 2


def test_env_statistics_published_under_both_names(tmp_path: Path, mnist: np.ndarray) -> None:
    text = (MNIST + ENV + "[env.StimuliData-s]\nApplyTo=TestOnly\n"
            "[c]\nMean=[sp.StimuliData-s]_GlobalValue.mean\n")
    sp, cfg = provider(tmp_path, text)
    mean = float(mnist[sp.partition_ids("Test")].astype(np.float64).mean())
    assert sp.stimuli_data["env.StimuliData-s"]["mean"] == pytest.approx(mean)
    assert cfg["c"].float("Mean") == pytest.approx(mean)


def test_spiking_env_keys_refused(tmp_path: Path, mnist: np.ndarray) -> None:
    with pytest.raises(UserError, match=r"net.ini:8: \[env\] StimulusType: spiking models are "
                       r"not supported by n2q .*remove the spike coding keys"):
        provider(tmp_path, MNIST + ENV + "StimulusType=JitteredPeriodic\n")


def test_sp_references_read_env_keys(tmp_path: Path, mnist: np.ndarray) -> None:
    # [sp]SizeX in a file whose provider is [env] (and the reverse) reads the provider's key
    text = (MNIST + "[env]\nSizeX=5\nSizeY=6\n[env.Transformation-1]\n"
            "Type=RescaleTransformation\nWidth=[sp]SizeX\nHeight=[env]SizeY\n")
    sp, _ = provider(tmp_path, text)
    x, _, _ = all_of(sp, "Test", shuffle=False)
    assert x.shape == (6, 1, 6, 5)
