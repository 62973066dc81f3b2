"""Time per training step of the same network float, SAT W4A4 and LSQ W4A4, in one run.

    nice /work/venv/bin/python tools/bench_qat.py [--steps 20] [--device cpu]
        [--nets lenet resnet18 slb] [--threads N] [--batch-lenet 128] [--batch-resnet 32]

The ``slb`` block times SLB W4 (every Conv, float Fc, float activations) on the same
ResNet-18-CIFAR against float (goal: <= 1.5x on CPU), and the SLB quantizers alone.

Networks (built here with n2q's quantizers, so the numbers isolate the quantizers' cost):
- LeNet (seed 004): conv 6/16/120 5x5 + BN, fc 84/10, 1x32x32 input;
- ResNet-18 for CIFAR (3x32x32): 3x3 stem, 4 stages x 2 basic blocks (64..512), fc 10.
Quantized variants: every Conv/Fc gets QWeight (first and last 8-bit, the rest 4-bit), every
ReLU is replaced by QAct (4-bit), as in the seed's tutorials. Reports ms per step (forward,
backward, SGD update; median of interleaved rounds) and the ratio to float. Goal: <= 1.3x
float on CPU.

ImageNet size and compiled steps (issue 14 block, at the end of this file):
    python tools/bench_qat.py --device cuda --nets resnet18-imagenet   # 3x224x224, 1000 classes
    python tools/bench_qat.py --compile --threads 1 --nets lenet resnet18
``resnet18-imagenet`` is torchvision's ResNet-18 topology (7x7/2 stem, 3x3/2 max pool); every
row also prints images per second (to compare with N2D2's published A100 figure for ResNet-18
SAT on ImageNet: about 1 420 images/s). ``--compile`` times each variant eager and compiled
(torch.compile of the network: forward and backward) and prints compiled / eager and the QAT
compiled step over the float compiled step (goal <= 1.1).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from n2q.quant import ACT_QUANTIZERS, WEIGHT_QUANTIZERS, apply_weight_op


class QConv(nn.Module):
    def __init__(self, cin, cout, k, stride=1, padding=0, wq=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) * (2 / (cin * k * k)) ** 0.5)
        self.stride, self.padding, self.wq = stride, padding, wq

    def forward(self, x):
        def op(x, w, b):
            return F.conv2d(x, w, b, self.stride, self.padding)
        return apply_weight_op(self.wq, op, x, self.weight, None)


class QFc(nn.Module):
    def __init__(self, cin, cout, wq=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) * (1 / cin) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.wq = wq

    def forward(self, x):
        return apply_weight_op(self.wq, F.linear, x.flatten(1), self.weight, self.bias)


class Act(nn.Module):
    """ReLU (float) or the activation quantizer (which provides the clamp)."""

    def __init__(self, aq=None):
        super().__init__()
        self.aq = aq

    def forward(self, x):
        return torch.relu(x) if self.aq is None else self.aq(x)


def quantizers(method: str | None):
    def wq(R):
        return None if method is None else WEIGHT_QUANTIZERS[method](range=R)

    def aq(R=15):
        if method is None:
            return None
        return ACT_QUANTIZERS[method](range=R, **({"alpha": 6.0} if method == "SAT" else {}))
    return wq, aq


def lenet(method: str | None) -> nn.Module:
    wq, aq = quantizers(method)
    return nn.Sequential(
        QConv(1, 6, 5, wq=wq(255)), nn.BatchNorm2d(6), Act(aq()), nn.MaxPool2d(2),
        QConv(6, 16, 5, wq=wq(15)), nn.BatchNorm2d(16), Act(aq()), nn.MaxPool2d(2),
        QConv(16, 120, 5, wq=wq(15)), nn.BatchNorm2d(120), Act(aq()),
        QFc(120, 84, wq=wq(15)), Act(aq()), QFc(84, 10, wq=wq(255)))


class Block(nn.Module):
    def __init__(self, cin, cout, stride, wq, aq):
        super().__init__()
        self.c1, self.b1, self.a1 = QConv(cin, cout, 3, stride, 1, wq(15)), nn.BatchNorm2d(
            cout), Act(aq())
        self.c2, self.b2 = QConv(cout, cout, 3, 1, 1, wq(15)), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(QConv(cin, cout, 1, stride, 0, wq(15)),
                                      nn.BatchNorm2d(cout))
        self.a2 = Act(aq())

    def forward(self, x):
        y = self.b2(self.c2(self.a1(self.b1(self.c1(x)))))
        return self.a2(y + (x if self.down is None else self.down(x)))


def resnet18(method: str | None) -> nn.Module:
    wq, aq = quantizers(method)
    layers: list[nn.Module] = [QConv(3, 64, 3, 1, 1, wq(255)), nn.BatchNorm2d(64), Act(aq())]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride, wq, aq), Block(cout, cout, 1, wq, aq)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), QFc(512, 10, wq=wq(255))]
    return nn.Sequential(*layers)


def make_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()
        if x.is_cuda:
            torch.cuda.synchronize()

    return step


def time_variants(steps: dict[str, object], rounds: int) -> dict[str, float]:
    """Median seconds per step of each variant, the variants interleaved round by round so that
    a change of machine load hits all of them alike."""
    for step in steps.values():
        for _ in range(2):          # warm-up (and LSQ first-forward init)
            step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for label, step in steps.items():
            start = time.perf_counter()
            step()
            times[label].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--nets", nargs="+", default=["lenet", "resnet18", "slb"],
                    help="lenet, resnet18 (float, SAT, LSQ), slb (float, SLB W4 ResNet-18) and "
                    "simqat (float, SimQAT W8A8: configs/LeNet5*.ini and ResNet-18)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--batch-lenet", type=int, default=128)
    ap.add_argument("--batch-resnet", type=int, default=32)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    add_imagenet_args(ap)  # issue 14 block
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    builders = {"lenet": (lenet, (1, 32, 32), args.batch_lenet),
                "resnet18": (resnet18, (3, 32, 32), args.batch_resnet),
                "resnet18-imagenet": (resnet18_imagenet, (3, 224, 224), args.batch_imagenet)}
    if args.compile:
        return compare_compiled({k: v for k, v in builders.items() if k in args.nets}, args)
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, "
          f"median of {args.steps} interleaved steps")
    print(f"{'network':<10} {'variant':<9} {'ms/step':>9} {'x float':>8} {'images/s':>9}")
    for name in (n for n in args.nets if n in builders):
        build, shape, batch = builders[name]
        torch.manual_seed(0)
        x = torch.rand(batch, *shape, device=args.device)
        y = torch.randint(0, 10, (batch,), device=args.device)
        steps = {}
        for label, method in (("float", None), ("SAT W4A4", "SAT"), ("LSQ W4A4", "LSQ")):
            torch.manual_seed(0)
            steps[label] = make_step(build(method).to(args.device), x, y)
        result = time_variants(steps, args.steps)
        for label, t in result.items():
            print(f"{name:<10} {label:<9} {t * 1e3:9.2f} {t / result['float']:8.2f} "
                  f"{batch / t:9.1f}")
    if "slb" in args.nets:
        bench_slb(args)
    if "simqat" in args.nets:
        bench_simqat(args)


# -- SLB (seeds 000/002): ResNet-18-CIFAR W4 training step against float -----------------------
# Golden Stick's SLB quantizes every Conv (the stem too) and leaves the Fc float; activations
# float (weights-only SLB). Every weight carries R+1 = 16 logits: the step adds a softmax over
# 11M x 16 logits forward and backward, and the optimizer updates 16x the float weight count.
def slb_resnet18(range_: int = 15) -> nn.Module:
    def wq(_bits: int) -> nn.Module:
        return WEIGHT_QUANTIZERS["SLB"](range=range_)

    def aq(_bits: int = 15) -> None:
        return None
    layers: list[nn.Module] = [QConv(3, 64, 3, 1, 1, wq(0)), nn.BatchNorm2d(64), Act()]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride, wq, aq), Block(cout, cout, 1, wq, aq)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), QFc(512, 10)]
    return nn.Sequential(*layers)


def slb_quantizer_time(net: nn.Module, rounds: int) -> float:
    """Median seconds of the SLB quantizers alone (relaxed forward + backward of every conv)."""
    convs = [m for m in net.modules() if isinstance(m, QConv)]
    for m in convs:
        m.wq.logits.grad = None     # as after the solver's update: the gradient memory is reused
    times = []
    for _ in range(rounds + 1):     # the first round is a warm-up
        start = time.perf_counter()
        total = sum((m.wq.fake_quantize(m.weight) * 1e-3).sum() for m in convs)
        total.backward()
        times.append(time.perf_counter() - start)
        for m in convs:
            m.wq.logits.grad = None
    return statistics.median(times[1:])


def bench_slb(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    x = torch.rand(args.batch_resnet, 3, 32, 32, device=args.device)
    y = torch.randint(0, 10, (args.batch_resnet,), device=args.device)
    torch.manual_seed(0)
    float_net = resnet18(None).to(args.device)
    slb_net = slb_resnet18().to(args.device)
    with torch.no_grad():
        slb_net(x[:1])        # the logits take the weights' shapes at the first forward
    logits = sum(m.wq.logits.numel() for m in slb_net.modules() if isinstance(m, QConv))
    result = time_variants({"float": make_step(float_net, x, y),
                            "SLB W4": make_step(slb_net, x, y)}, args.steps)
    quantizers = slb_quantizer_time(slb_net, max(3, args.steps // 4))
    print(f"SLB: {logits / 1e6:.1f}M logits (R+1 = 16 per conv weight), batch "
          f"{args.batch_resnet}; goal <= 1.5x float")
    for label, t in result.items():
        print(f"{'resnet18':<10} {label:<9} {t * 1e3:9.2f} {t / result['float']:8.2f}")
    print(f"{'resnet18':<10} {'SLB only':<9} {quantizers * 1e3:9.2f}   (softmax forward + "
          "backward of all SLB quantizers)")


# -- SimQAT (seed 001): 8-bit fake quantization with tracked ranges against float --------------
# Golden Stick's SimQAT: every Conv/Fc weight per output channel (symmetric), every activation
# after its ReLU per layer (asymmetric); quantization on (past the quant delay). The LeNet5 pair
# is the seed's network built by n2q from configs/LeNet5.ini and configs/LeNet5_SimQAT.ini.
def simqat_lenet5(quantized: bool) -> nn.Module:
    from pathlib import Path

    from n2q.config import load_config
    from n2q.net import build_network
    from n2q.quant.protocol import quantizers as net_quantizers

    configs = Path(__file__).resolve().parent.parent / "configs"
    net = build_network(load_config(configs / f"LeNet5{'_SimQAT' if quantized else ''}.ini"),
                        (1, 32, 32))
    for _, q in net_quantizers(net):
        q.after_step(10 ** 9)           # past the quant delay: quantizing
    return nn.Sequential(_Logits(net))


class _Logits(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)["softmax"].flatten(1)


def simqat_resnet18(quantized: bool) -> nn.Module:
    def wq(_bits: int) -> nn.Module | None:
        return WEIGHT_QUANTIZERS["SimQAT"](range=255) if quantized else None

    def aq(_bits: int = 255) -> nn.Module:
        return nn.Sequential(nn.ReLU(), ACT_QUANTIZERS["SimQAT"](range=255)) if quantized else (
            nn.ReLU())
    layers: list[nn.Module] = [QConv(3, 64, 3, 1, 1, wq(8)), nn.BatchNorm2d(64), aq()]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride, wq, aq), Block(cout, cout, 1, wq, aq)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), QFc(512, 10, wq=wq(8))]
    return nn.Sequential(*layers)


def bench_simqat(args: argparse.Namespace) -> None:
    print("SimQAT W8A8 (weights per channel, activations per layer, ranges tracked every "
          "step); goal <= 1.3x float on CPU")
    for name, build, shape, batch in (("lenet5", simqat_lenet5, (1, 32, 32), 32),
                                      ("resnet18", simqat_resnet18, (3, 32, 32),
                                       args.batch_resnet)):
        torch.manual_seed(0)
        x = torch.rand(batch, *shape, device=args.device)
        y = torch.randint(0, 10, (batch,), device=args.device)
        steps = {}
        for label, quantized in (("float", False), ("SimQAT", True)):
            torch.manual_seed(0)
            steps[label] = make_step(build(quantized).to(args.device), x, y)
        result = time_variants(steps, args.steps)
        for label, t in result.items():
            print(f"{name:<10} {label:<9} {t * 1e3:9.2f} {t / result['float']:8.2f}")


# ------------------------------------------------------------------------------------------------
# issue 14: ImageNet-sized ResNet-18 and compiled steps
# ------------------------------------------------------------------------------------------------
def add_imagenet_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--batch-imagenet", type=int, default=8,
                    help="batch of resnet18-imagenet [8; use 64-256 on a GPU]")
    ap.add_argument("--compile", action="store_true",
                    help="time each variant eager and compiled (torch.compile)")


def resnet18_imagenet(method: str | None) -> nn.Module:
    """ResNet-18 for 3x224x224 inputs: 7x7/2 stem, 3x3/2 max pool, 4 stages, fc 1000 (the
    labels drawn in 0..9 leave the step's cost unchanged)."""
    wq, aq = quantizers(method)
    layers: list[nn.Module] = [QConv(3, 64, 7, 2, 3, wq(255)), nn.BatchNorm2d(64), Act(aq()),
                               nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride, wq, aq), Block(cout, cout, 1, wq, aq)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), QFc(512, 1000, wq=wq(255))]
    return nn.Sequential(*layers)


def compare_compiled(builders: dict, args: argparse.Namespace) -> None:
    """Eager and compiled step of every variant, interleaved; the compile time is reported
    apart (the first compiled steps)."""
    print(f"{'network':<18} {'variant':<9} {'eager ms':>9} {'compiled':>9} {'c/e':>6} "
          f"{'c x float c':>11} {'images/s c':>10} {'compile s':>9}")
    for name, (build, shape, batch) in builders.items():
        torch.manual_seed(0)
        x = torch.rand(batch, *shape, device=args.device)
        y = torch.randint(0, 10, (batch,), device=args.device)
        steps, compile_s = {}, {}
        for label, method in (("float", None), ("SAT W4A4", "SAT"), ("LSQ W4A4", "LSQ")):
            torch.manual_seed(0)
            steps[label] = make_step(build(method).to(args.device), x, y)
            torch.manual_seed(0)
            compiled = torch.compile(build(method).to(args.device))
            steps[label + " c"] = make_step(compiled, x, y)
            start = time.perf_counter()
            for _ in range(2):  # compiles the forward and the backward (LSQ init: 2nd graph)
                steps[label + " c"]()
            compile_s[label] = time.perf_counter() - start
        result = time_variants(steps, args.steps)
        for label in compile_s:
            e, c = result[label], result[label + " c"]
            print(f"{name:<18} {label:<9} {e * 1e3:9.2f} {c * 1e3:9.2f} {c / e:6.2f} "
                  f"{c / result['float c']:11.2f} {batch / c:10.1f} {compile_s[label]:9.1f}")


if __name__ == "__main__":
    main()
