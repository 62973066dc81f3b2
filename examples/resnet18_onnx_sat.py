"""SAT on the ONNX model zoo's ResNet-18 v1, in Python (seed 004, "ONNX model : ResNet-18
Example - Python").

ImageNet data base and provider with the seed's transformations (a flip on the fly), the
ONNX model imported with N2D2's cell names, then a walk over the cells: SAT weight quantizers
in clamp mode on every Conv and Fc, the seed's solver settings on Conv, Fc and BatchNorm.
Learn, save resnet_weights_clamped/. Then 4 bits: every ReLU becomes a linear activation with
a 4-bit SAT activation quantizer, the weight quantizers quantize to 4 bits (8 bits for the
first conv and the last Fc), learn again, save resnet_weights_SAT/, draw the graphs.

It is configs/resnet18-v1_SAT_clamp.ini then configs/resnet18-v1_SAT_W4A4.ini written in
Python: with the same seed and steps, the same weights.

    python tools/install_onnx_models.py resnet-18-v1      # the zoo model, in $N2Q_MODELS
    python examples/resnet18_onnx_sat.py --epochs 150     # ImageNet in $N2Q_DATA/ILSVRC2012
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import n2q

FIRST, LAST = "resnetv15_conv0_fwd", "resnetv15_dense0_fwd"


def options() -> argparse.Namespace:
    models = os.environ.get("N2Q_MODELS", str(Path.home() / ".n2q" / "models"))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx", default=f"{models}/ONNX/resnet-18-v1/resnet18v1.onnx")
    p.add_argument("--data-path", default=None, help="default $N2Q_DATA/ILSVRC2012")
    p.add_argument("--epochs", type=int, default=0, help="epochs per step (-learn-epoch)")
    p.add_argument("--stimuli", type=int, default=0, help="stimuli per step (-learn)")
    p.add_argument("--log", type=int, default=1000, help="stimuli between validations")
    p.add_argument("--size", type=int, default=224, help="crop size (the seed: 224)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default=None, help="cpu, or a GPU index (default: GPU 0 if any)")
    p.add_argument("--workdir", default=".")
    args = p.parse_args()
    if not (args.epochs or args.stimuli):
        args.epochs = 150
    return args


def provider(args: argparse.Namespace) -> n2q.Provider:
    """ILSVRC2012, all of train/ learned; random crops and flips when learning, a central
    crop of the image rescaled to 8/7 of the crop size otherwise."""
    database = n2q.Database("ILSVRC2012", data_path=args.data_path, learn=1.0,
                            random_partitioning=True)
    size, full = args.size, args.size * 8 // 7          # 224 -> 256 as in the seed
    sp = n2q.Provider(database, [size, size, 3], batch_size=args.batch_size)
    sp.add_transformation([
        n2q.Transformation("ColorSpace", color_space="RGB"),
        n2q.Transformation("RangeAffine", first_operator="Divides", first_value=255.0),
        n2q.Transformation("RandomResizeCrop", width=size, height=size, scale_min=0.2,
                           scale_max=1.0, ratio_min=0.75, ratio_max=1.33, apply_to="LearnOnly"),
        n2q.Transformation("Rescale", width=full, height=full, keep_aspect_ratio=True,
                           resize_to_fit=False, apply_to="NoLearn"),
        n2q.Transformation("PadCrop", width=full, height=full, apply_to="NoLearn"),
        n2q.Transformation("SliceExtraction", width=size, height=size,
                           offset_x=(full - size) // 2, offset_y=(full - size) // 2,
                           apply_to="NoLearn"),
    ])
    sp.add_on_the_fly_transformation(
        n2q.Transformation("Flip", random_horizontal_flip=True, apply_to="LearnOnly"))
    return sp


# the seed's solver: cosine decay over 150 ImageNet epochs, effective batch 2 x 128
SOLVER = dict(learning_rate_policy="CosineDecay", learning_rate=0.05, momentum=0.9,
              decay=0.00004, max_iterations=192175050, iteration_size=2)


def load_model(args: argparse.Namespace, sp: n2q.Provider) -> n2q.Network:
    """The ONNX graph, its weights drawn from the SAT filler (Xavier, FanOut) instead of the
    zoo's (ONNX_init=0); no bias on the convolutions (a BatchNorm follows each)."""
    xavier = n2q.Filler("Xavier", variance_norm="FanOut", scaling=1.0)
    return n2q.Network.from_onnx(args.onnx, sp, init=False, softmax="soft1", defaults={
        "Conv": {"weights_filler": xavier, "no_bias": True},
        "Fc": {"weights_filler": xavier, "no_bias": False}})


def clamp_phase(model: n2q.Network) -> None:
    """SAT weights in clamp mode (no scaling for Conv: a BatchNorm follows; scaling for the
    Fc), and the seed's solver settings on every cell with parameters."""
    for cell in model:
        if cell.type in ("Conv", "Fc"):
            n2q.set_quantizer(cell, weight=n2q.QWeight(
                "SAT", apply_scaling=cell.type == "Fc", apply_quantization=False))
        if cell.type in ("Conv", "Fc", "BatchNorm"):
            for name, value in SOLVER.items():
                n2q.set_solver_parameter(cell, name, value)


def quantize_phase(model: n2q.Network) -> None:
    """4-bit SAT activations in place of the ReLUs, 4-bit weights, 8-bit first and last."""
    for cell in model:
        if n2q.activation_name(cell) == "Rectifier":
            n2q.set_activation(cell, "Linear")
            n2q.set_quantizer(cell, act=n2q.QAct(
                "SAT", range=15, solver=n2q.Solver("SGD", **SOLVER)))
        if cell.type in ("Conv", "Fc"):
            n2q.change_quantizer(cell, apply_quantization=True, range=15)
    n2q.change_quantizer(model[FIRST], range=255)
    n2q.change_quantizer(model[LAST], range=255)


def learn(model: n2q.Network, args: argparse.Namespace, name: str) -> None:
    best = n2q.learn(model, epochs=args.epochs, stimuli=args.stimuli, log=args.log,
                     workdir=args.workdir, metric="Precision", device=args.device)
    if best is not None:          # go on from the best validated weights
        model.load_weights(best, ignore_missing=False)
    work = args.workdir.rstrip("/")
    model.draw_graph(f"{work}/resnet18v1_{name}")
    model.save_weights(f"{work}/resnet_weights_{name}")


def main() -> None:
    args = options()
    n2q.seed(args.seed)
    sp = provider(args)
    model = load_model(args, sp)
    clamp_phase(model)
    print(model.summary())
    learn(model, args, "clamped")

    quantize_phase(model)
    print(model.summary())
    learn(model, args, "SAT")
    print(f"test: {n2q.test(model, workdir=args.workdir, device=args.device)}")


if __name__ == "__main__":
    main()
