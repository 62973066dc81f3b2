"""n2q: train quantized neural networks from N2D2 INI files, on PyTorch.

The command line (``n2q NET.ini -learn-epoch 10``) and this Python API build the same
networks from the same INI keys. Python objects stand for INI sections and are checked by the
same readers, so a mistake gets the message of its INI key.

Data
    Database(type, **keys)          the [database] section: Database("MNIST_IDX", validation=0.1)
    Transformation(type, **keys)    one [sp.*] section: Transformation("Rescale", width=32, ...)
    Provider(db, size, batch_size)  the [sp] section; add_transformation(t),
                                    add_on_the_fly_transformation(t); loader(partition)
Networks (n2q.Network is an nn.Module: net(x) -> {target cell: output})
    Network.from_ini(path)          an INI file (or an .onnx file run alone)
    Network.from_onnx(path, provider, init=True, defaults={"Conv": {...}})
    Sequence([Conv(6, 5), BatchNorm(activation="Rectifier"), ..., Softmax()], provider)
    Layer(type, **keys), Conv, Fc, Pool, BatchNorm, Dropout, Softmax
    for cell in net: ... ; net["conv1"] ; net.to_ini()
    net.save_weights(dir) ; net.load_weights(dir, ignore_missing=True)
    net.fuse() (integer-only network) ; net.draw_graph(path) ; net.export_onnx(path)
Settings
    QWeight(method, **keys), QAct(method, **keys)   every registered method (SAT, LSQ, ...)
    Solver(**keys), Filler(name, **keys), Activation(name, **keys)
    set_quantizer(cell, weight=, act=) ; change_quantizer(cell, range=15)
    set_solver(cell, learning_rate=0.05) ; set_filler(cell, weights=Filler("Xavier"))
    set_activation(cell, "Linear")
Learning
    seed(n) ; learn(net, epochs=N) ; test(net) -> {target: rate}
    or any PyTorch loop over provider.loader("Learn") with net.output(x)
Any PyTorch model
    quantize_model(module, weight=QWeight(...), act=QAct(...), first=..., last=...)
    lifecycle(model): plan(RunPlan(total_epochs=E), 0), start_epoch(e), after_optimizer(step)
    for methods with a schedule (SLB) in a hand-written loop

Importing n2q does not import torch; the names above load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module of n2q.api that defines it (loaded on first access: torch is heavy)
_EXPORTS = {
    "Database": "data", "Transformation": "data", "Provider": "data",
    "Layer": "layers", "Conv": "layers", "Fc": "layers", "Pool": "layers",
    "BatchNorm": "layers", "Dropout": "layers", "Softmax": "layers",
    "QWeight": "settings", "QAct": "settings", "Solver": "settings", "Filler": "settings",
    "Activation": "settings",
    "set_quantizer": "cells", "change_quantizer": "cells", "quantizer_settings": "cells",
    "set_solver": "cells", "set_solver_parameter": "cells", "set_filler": "cells",
    "set_activation": "cells", "activation_name": "cells",
    "Network": "network", "Sequence": "network",
    "seed": "run", "learn": "run", "test": "run",
    "quantize_model": "torch_model", "quantized_layers": "torch_model",
    "lifecycle": "torch_model", "RunPlan": "torch_model",
    "UserError": None,
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'n2q' has no attribute {name!r}")
    if name == "UserError":
        from n2q.errors import UserError

        value: Any = UserError
    else:
        module = importlib.import_module(f"n2q.api.{_EXPORTS[name]}")
        value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
