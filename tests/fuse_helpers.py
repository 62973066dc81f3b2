"""Helpers the fusion tests share: random 8-bit stimuli and a short SGD run that moves the
BatchNorm statistics and the SAT alphas before a network is fused."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_stimuli(n: int, seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """n random [0, 1] images [n, *shape] on the 1/255 grid (the fused input is round(255 x))."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=g).float() / 255


def train_briefly(
    net,
    shape: tuple[int, ...],
    target: str,
    classes: int,
    *,
    steps: int,
    batch: int,
    lr: float,
    first_seed: int,
    seed: int = 0,
) -> None:
    """`steps` SGD steps (momentum 0.9) of cross-entropy on `target` against random labels in
    [0, classes); batch i is random_stimuli(batch, first_seed + i). Leaves `net` in eval mode."""
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    for step in range(steps):
        x = random_stimuli(batch, first_seed + step, shape)
        label = torch.randint(0, classes, (batch,), generator=g)
        loss = F.cross_entropy(net(x)[target].flatten(1), label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
