"""Target losses and predictions against plain PyTorch formulas."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from n2q.train.reports import TargetReport
from n2q.train.targets import TargetInfo


def target(kind: str, c: int = 4, label_map: list[int] | None = None,
           tv: float = 1.0, dv: float = 0.0) -> TargetInfo:
    return TargetInfo(section="t.Target", cell="t", loss_kind=kind, nb_outputs=c,
                      nb_classes=2 if c == 1 else c, target_value=tv, default_value=dv,
                      top_n=1, report=TargetReport(Path("unused"), []),
                      label_map=None if label_map is None else torch.tensor(label_map))


def test_softmax_loss_is_cross_entropy_on_logits() -> None:
    out = torch.randn(5, 4, 1, 1)
    y = torch.tensor([0, 3, 2, 1, 3])
    got = target("softmax_ce").loss(out, y)
    torch.testing.assert_close(got, F.cross_entropy(out.view(5, 4), y))


def test_mse_loss_gradient_is_output_minus_target_over_batch() -> None:
    out = torch.randn(3, 4, requires_grad=True)
    y = torch.tensor([1, 0, 3])
    t = target("output", tv=0.9, dv=-0.1)
    t.loss(out, y).backward()
    want = torch.full((3, 4), -0.1)
    want[torch.arange(3), y] = 0.9
    torch.testing.assert_close(out.grad, (out.detach() - want) / 3)


def test_single_output_target_is_binary() -> None:
    t = target("output", c=1, tv=1.0, dv=0.0)
    out = torch.tensor([[0.7], [0.2], [0.51]])
    assert t.predict(out).tolist() == [1, 0, 1]
    loss = t.loss(out, torch.tensor([1, 0, 0]))
    assert loss.item() == pytest.approx(((0.3 ** 2) + 0.2 ** 2 + 0.51 ** 2) / 6)


@pytest.mark.parametrize("kind", ["softmax_ce", "output", "logistic_bce"])
def test_mapped_loss_only_counts_scored_stimuli(kind: str) -> None:
    torch.manual_seed(0)
    out = torch.randn(6, 4, 2, 2)  # spatial output: the label applies to every position
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    mapped = target(kind, label_map=[0, 1, -1, 2, -1, 3])
    plain = target(kind)
    classes = mapped.map_labels(labels)
    assert classes.tolist() == [0, 1, -1, 2, -1, 3]
    keep = classes >= 0
    torch.testing.assert_close(mapped.loss(out, classes),
                               plain.loss(out[keep], classes[keep]))


@pytest.mark.parametrize("network, fix", [
    ("net.ini", "set NbOutputs=10 on fc"),
    # n2q model.onnx: its INI is n2q's own, the user cannot set NbOutputs in it
    ("model.onnx", "write an INI with [sp], an [onnx] section (File=) and a [fc.Target]")])
def test_too_few_outputs_names_the_fix_the_user_can_make(tmp_path: Path, network: str,
                                                         fix: str) -> None:
    from types import SimpleNamespace

    from n2q.errors import UserError
    from n2q.train.targets import make_targets

    target = SimpleNamespace(section="fc.Target", cell="fc", labels_mapping=None)
    net = SimpleNamespace(targets=[target], cells={"fc": SimpleNamespace(out_shape=(4,))})
    sp = SimpleNamespace(cfg=SimpleNamespace(path=tmp_path / network), nb_classes=10,
                         labels=[str(d) for d in range(10)])
    with pytest.raises(UserError) as error:
        make_targets(net, sp, tmp_path)
    assert "the target cell fc has 4 output(s) but there are 10 data base labels" in str(error)
    assert fix in str(error.value)
    assert not (tmp_path / "fc.Target").exists()
