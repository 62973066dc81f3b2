"""Time INI loading (parse + template expansion) and a full resolution of every key.

Usage: ``python tools/bench_config.py [MODELS_DIR]`` (default: $N2Q_TEST_REFERENCE/n2d2-models).
The spec asks that loading ResNet-50.ini takes well under 0.1 s.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from n2q.config import load_config
from n2q.errors import UserError

FILES = ("LeNet.ini", "ResNet-18.ini", "ResNet-50.ini", "ResNet-50-BN.ini", "MobileNet_v2.ini",
         "ONNX/resnet-50-v1-onnx.ini")


def best_of(fn, repeat: int = 20) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def resolve_all(path: Path) -> int:
    cfg = load_config(path)
    cfg.set_generated("sp", "_EpochSize", 6400)
    for sec in cfg.sections:
        for key in ("_NbOutputs", "_OutputsWidth", "_OutputsHeight"):
            cfg.set_generated(sec.name, key, 8)
    count = 0
    for sec in cfg.sections:
        for key in sec.keys():
            try:
                sec.str(key)
            except UserError:
                pass  # a key needing a value only a run makes: its failed resolution is timed too
            count += 1
    return count


def main() -> int:
    default = Path(os.environ.get("N2Q_TEST_REFERENCE", "")) / "n2d2-models"
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    if not root.is_dir():
        print(f"no models folder {root}: give it as argument or set N2Q_TEST_REFERENCE")
        return 2
    os.environ.setdefault("N2Q_MODELS", str(root))
    print(f"{'file':32s} {'sections':>8s} {'load ms':>8s} {'keys':>6s} {'resolve-all ms':>14s}")
    for name in FILES:
        path = root / name
        if not path.is_file():
            continue
        sections = len(load_config(path).sections)
        load = best_of(lambda p=path: load_config(p))
        keys = resolve_all(path)
        full = best_of(lambda p=path: resolve_all(p), repeat=5)
        print(f"{name:32s} {sections:8d} {load * 1e3:8.2f} {keys:6d} {full * 1e3:14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
