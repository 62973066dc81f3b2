"""Test-pass speed of the fused integer network vs the fake-quant network, same data, one run.

    nice /work/venv/bin/python tools/bench_fused.py [--ini NET.ini [-w WEIGHTS]]
        [--batches 20] [--batch-size 256] [--threads N] [--repeat 3] [--simqat]

--simqat: the SimQAT LeNet5 of seed 001 (configs/LeNet5_SimQAT.ini on [0, 1] inputs, MNIST
from $N2Q_DATA, or --ini), fake quantization against the integer network with float64 and with
fixed-point requantization (random weights, ranges tracked on a few batches, unless -w).

Without --ini: the seed 004 LeNet (W4A4, conv1/fc2 8-bit weights, BatchNorm + SAT activations)
with a residual block added, on random [0, 1] stimuli of its input shape. The BatchNorm
statistics are set by a few training-mode passes so that activations are realistic. Both
networks see the same batches (on the 1/255 grid); the script also reports how many
predictions agree (with random weights, a few near-ties of the float32 fake-quant network can
flip a class: the fused network equals the float64 fake-quant network, see tests/test_fuse.py).
With --ini: that network on its provider's Test stimuli (e.g. configs/LeNet_SAT_W4A4.ini
-w weights_validation on the real MNIST, with $N2Q_DATA set); without -w its weights are random
and its BatchNorm statistics set as above. Timings are the best of --repeat passes over all
batches, the two networks alternating.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

BENCH_INI = """
[Conv_def]
Type=Conv
ActivationFunction=Linear
QWeight=SAT
QWeight.Range=15
NoBias=1

[Bn_def]
Type=BatchNorm
ActivationFunction=Linear
QAct=SAT
QAct.Alpha=6.0
QAct.Range=15

[conv1] Conv_def
Input=sp
KernelDims=5 5
NbOutputs=32
QWeight.Range=255

[bn1] Bn_def
Input=conv1
NbOutputs=32

[pool1]
Input=bn1
Type=Pool
PoolDims=2 2
Stride=2
Pooling=Max
NbOutputs=32
Mapping.Size=1

[conv2] Conv_def
Input=pool1
KernelDims=3 3
Padding=1
NbOutputs=32

[bn2] Bn_def
Input=conv2
NbOutputs=32

[sum2]
Input=bn2,pool1
Type=ElemWise
Operation=Sum
NbOutputs=32
ActivationFunction=Linear
QAct=SAT
QAct.Alpha=6.0
QAct.Range=15

[conv3] Conv_def
Input=sum2
KernelDims=5 5
NbOutputs=64

[bn3] Bn_def
Input=conv3
NbOutputs=64

[pool3]
Input=bn3
Type=Pool
PoolDims=2 2
Stride=2
Pooling=Max
NbOutputs=64
Mapping.Size=1

[fc1]
Input=pool3
Type=Fc
NbOutputs=10
ActivationFunction=Linear
QWeight=SAT
QWeight.Range=255
QWeight.ApplyScaling=1

[softmax]
Input=fc1
Type=Softmax
NbOutputs=10
WithLoss=1

[softmax.Target]
"""


def build(ini: Path | None, count: int, batch_size: int):
    """(network, stimuli batches [batch_size, C, H, W] on the 1/255 grid, real data or not)."""
    from n2q.config import load_config
    from n2q.net import build_network

    if ini is None:
        ini = Path(tempfile.mkdtemp()) / "bench_fused.ini"
        ini.write_text(BENCH_INI)
        net = build_network(load_config(ini), (1, 32, 32))
        shape = (batch_size, *net.input_shape)
        return net, [torch.randint(0, 256, shape).float() / 255 for _ in range(count)], False
    from n2q.data import make_provider

    cfg = load_config(ini)
    provider = make_provider(cfg, seed=1)
    stimuli = torch.cat([x for x, _ in provider.loader("Test", shuffle=False)])
    stimuli = torch.round(stimuli.clamp(0, 1) * 255)[: count * batch_size] / 255
    return build_network(cfg, provider.size), list(stimuli.split(batch_size)), True


def timed(
    fns: list, batches: list[torch.Tensor], repeat: int
) -> tuple[list[float], list[list[torch.Tensor]]]:
    """Best time of each function over all batches; the functions alternate within each
    repetition so that a busy machine slows them alike."""
    best = [float("inf")] * len(fns)
    outputs: list[list[torch.Tensor]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            outputs[i] = [fn(x) for x in batches]
            best[i] = min(best[i], time.perf_counter() - start)
    return best, outputs


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ini", type=Path, default=None)
    parser.add_argument("-w", "--weights", type=Path, default=None)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--simqat", action="store_true",
                        help="SimQAT (seed 001): configs/LeNet5_SimQAT.ini on [0, 1] inputs, "
                        "fake quantization vs the integer network with float64 and with "
                        "fixed-point (M0, shift) requantization")
    return parser.parse_args()


def set_weights(net, weights: Path | None, batches: list[torch.Tensor]) -> None:
    """Load `weights`, or (random weights) set the BatchNorm running statistics from a few
    training-mode passes so that activations are realistic; leaves `net` in eval mode."""
    if weights is not None:
        from n2q.io.weights import load_weights

        load_weights(net, weights, ignore_missing=False)
    else:
        net.train()
        with torch.no_grad():
            for x in batches[:5]:
                net(x)
    net.eval()


def simqat_ini() -> Path:
    """configs/LeNet5_SimQAT.ini without its normalization (the fused network's input is the
    provider's [0, 1] stimuli on the 1/255 grid)."""
    import re

    text = (Path(__file__).resolve().parent.parent / "configs" / "LeNet5_SimQAT.ini").read_text()
    ini = Path(tempfile.mkdtemp()) / "LeNet5_SimQAT_01.ini"
    ini.write_text(re.sub(r"\[sp\.Transformation-normalize\][^\[]*", "", text))
    return ini


def bench_simqat(args: argparse.Namespace) -> None:
    """Seed 001: the SimQAT LeNet5 fake-quantized vs fused (float64 S' and fixed point)."""
    from n2q.quant.fixedpoint import use_fixed_point
    from n2q.quant.fusion import fuse_network
    from n2q.quant.protocol import quantizers

    torch.manual_seed(0)
    ini = args.ini or simqat_ini()
    net, batches, real = build(ini, args.batches, args.batch_size)
    for _, q in quantizers(net):
        q.after_step(10 ** 9)        # past the quant delay
    set_weights(net, args.weights, batches)   # random weights: ranges tracked on a few batches
    fused, _ = fuse_network(net)
    fixed, _ = fuse_network(net)
    use_fixed_point(fixed)
    target = net.targets[0].cell
    with torch.no_grad():
        times, outs = timed([lambda x: net(x)[target], lambda x: fused(x)[target],
                             lambda x: fixed(x)[target]], batches, args.repeat)
    n = sum(len(x) for x in batches)
    print(f"SimQAT LeNet5: {n} {'test' if real else 'random'} stimuli, "
          f"{torch.get_num_threads()} threads")
    for label, t, out in zip(("fake-quant network", "fused, float64 S'", "fused, fixed point"),
                             times, outs, strict=True):
        agree = sum(int((a.flatten(1).argmax(1) == b.flatten(1).argmax(1)).sum())
                    for a, b in zip(outs[0], out, strict=True))
        print(f"{label:<19}: {t * 1000:8.1f} ms ({n / t:9.0f} stimuli/s, "
              f"{times[0] / t:.2f}x fake-quant); same class on {agree}/{n}")


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.simqat:
        bench_simqat(args)
        return
    from n2q.quant.fuse import fuse_sat

    torch.manual_seed(0)
    net, batches, real = build(args.ini, args.batches, args.batch_size)
    set_weights(net, args.weights, batches)
    fused, float_lines = fuse_sat(net)
    target = net.targets[0].cell
    with torch.no_grad():
        (fake_s, fused_s), (fake_out, fused_out) = timed(
            [lambda x: net(x)[target], lambda x: fused(x)[target]], batches, args.repeat
        )
    agree = sum(
        int((a.flatten(1).argmax(1) == b.flatten(1).argmax(1)).sum())
        for a, b in zip(fake_out, fused_out, strict=True)
    )
    n = sum(len(x) for x in batches)
    print(
        f"{n} {'test' if real else 'random'} stimuli of {'x'.join(map(str, net.input_shape))}, "
        f"{torch.get_num_threads()} threads; cells left float: {len(float_lines)}"
    )
    print(f"fake-quant network: {fake_s * 1000:8.1f} ms  ({n / fake_s:9.0f} stimuli/s)")
    print(f"fused integer net : {fused_s * 1000:8.1f} ms  ({n / fused_s:9.0f} stimuli/s)")
    print(f"speed-up fused / fake-quant: {fake_s / fused_s:.2f}x; same class on {agree}/{n}")


if __name__ == "__main__":
    main()
