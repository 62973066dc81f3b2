"""SAT on a hand-made LeNet, in Python (seed 004, "Hand-Made model: LeNet Example - Python").

Part 1 learns LeNet on MNIST with clamped weights (SAT, ApplyQuantization=0) and saves them in
weights_clamped/. Part 2 builds the same LeNet with 4-bit weights (8-bit first and last
layers) and 4-bit SAT activations, imports weights_clamped/, learns again, saves new_weights/,
fuses BatchNorm and quantizers into an integer-only network and draws both graphs.

It is configs/LeNet_SAT_clamp.ini then configs/LeNet_SAT_W4A4.ini -w weights_clamped, written
in Python: with the same seed and the same number of steps, both give the same weights.

    python examples/lenet_sat.py --epochs 100          # the seed's run (MNIST in $N2Q_DATA)
    python examples/lenet_sat.py --stimuli 768 --log 768   # a quick look
"""

from __future__ import annotations

import argparse
from typing import Any

import n2q


def options() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=0, help="epochs per part (-learn-epoch)")
    p.add_argument("--stimuli", type=int, default=0, help="stimuli per part (-learn)")
    p.add_argument("--log", type=int, default=1000, help="stimuli between validations")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default=None, help="cpu, or a GPU index (default: GPU 0 if any)")
    p.add_argument("--data-path", default=None, help="MNIST folder (default $N2Q_DATA/mnist)")
    p.add_argument("--workdir", default=".")
    args = p.parse_args()
    if not (args.epochs or args.stimuli):
        args.epochs = 100
    return args


def provider(data_path: str | None) -> n2q.Provider:
    """MNIST, 10% of Learn kept for validation, rescaled to 32x32, batches of 256."""
    database = n2q.Database("MNIST_IDX", data_path=data_path, random_partitioning=True,
                            validation=0.1)
    sp = n2q.Provider(database, [32, 32, 1], batch_size=256)
    sp.add_transformation(n2q.Transformation("Rescale", width=32, height=32))
    return sp


SOLVER = dict(learning_rate=0.05, learning_rate_policy="None", momentum=0.0, decay=0.0)


def conv_conf(quantize: bool, range_: int = 15) -> dict[str, Any]:
    """Convolutions: no bias, no SAT scaling (a BatchNorm follows each of them)."""
    weight = n2q.QWeight("SAT", apply_scaling=False, apply_quantization=quantize,
                         range=range_ if quantize else None)
    return dict(activation="Linear", no_bias=True, solver=n2q.Solver(**SOLVER),
                quantizer=weight)


def fc_conf(quantize: bool, range_: int = 15) -> dict[str, Any]:
    """Fully connected layers: SAT scaling of the weights."""
    weight = n2q.QWeight("SAT", apply_scaling=True, apply_quantization=quantize,
                         range=range_ if quantize else None)
    return dict(activation="Linear", no_bias=True, solver=n2q.Solver(**SOLVER),
                quantizer=weight)


def bn_conf(quantize: bool) -> dict[str, Any]:
    """BatchNorm with a ReLU (part 1), or linear + 4-bit SAT activations (part 2)."""
    if not quantize:
        return dict(activation="Rectifier", solver=n2q.Solver(**SOLVER))
    act = n2q.QAct("SAT", alpha=6.0, range=15, solver=n2q.Solver("SGD", **SOLVER))
    return dict(activation="Linear", act_quantizer=act, solver=n2q.Solver(**SOLVER))


def lenet(sp: n2q.Provider, quantize: bool) -> n2q.Network:
    """The seed's LeNet; part 2 keeps conv1 and fc2 in 8 bits."""
    return n2q.Sequence([
        n2q.Conv(6, 5, name="conv1", **conv_conf(quantize, 255)),
        n2q.BatchNorm(name="bn1", **bn_conf(quantize)),
        n2q.Pool(2, stride_dims=2, pooling="Max", name="pool1"),
        n2q.Conv(16, 5, name="conv2", **conv_conf(quantize)),
        n2q.BatchNorm(name="bn2", **bn_conf(quantize)),
        n2q.Pool(2, stride_dims=2, pooling="Max", name="pool2"),
        n2q.Conv(120, 5, name="conv3", **conv_conf(quantize)),
        n2q.BatchNorm(name="bn3", **bn_conf(quantize)),
        n2q.Dropout(name="conv3.drop"),
        n2q.Fc(84, name="fc1", **fc_conf(quantize)),
        n2q.Dropout(name="fc1.drop"),
        n2q.Fc(10, name="fc2", **fc_conf(quantize, 255)),
        n2q.Softmax(name="softmax"),
    ], sp)


def learn(net: n2q.Network, args: argparse.Namespace) -> None:
    best = n2q.learn(net, epochs=args.epochs, stimuli=args.stimuli, log=args.log,
                     workdir=args.workdir, device=args.device)
    if best is not None:      # the best validated weights, as the INI run keeps them
        net.load_weights(best, ignore_missing=False)
    print(f"test: {n2q.test(net, workdir=args.workdir, device=args.device)}")


def main() -> None:
    args = options()
    work = args.workdir.rstrip("/")

    print("\n### Part 1: learn with clamped weights ###")
    n2q.seed(args.seed)              # = -seed: same initial weights and data order
    sp = provider(args.data_path)
    model = lenet(sp, quantize=False)
    print(model.summary())
    learn(model, args)
    model.save_weights(f"{work}/weights_clamped")

    print("\n### Part 2: 4-bit weights and activations ###")
    n2q.seed(args.seed)
    sp = provider(args.data_path)
    model = lenet(sp, quantize=True)
    model.load_weights(f"{work}/weights_clamped", ignore_missing=True)   # no alphas there
    learn(model, args)
    model.save_weights(f"{work}/new_weights")

    print("\n### Fuse BatchNorm and quantizers: integer-only LeNet ###")
    fused = model.fuse(f"{work}/weights_quantized")
    print(f"fused test: {n2q.test(model, model=fused, workdir=args.workdir, device=args.device)}")
    model.draw_graph(f"{work}/lenet_quant")
    model.draw_graph(f"{work}/lenet_fused", model=fused)


if __name__ == "__main__":
    main()
