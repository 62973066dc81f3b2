"""The phases of a run, one module each; this module gathers their public names.

- :mod:`n2q.train.context`: :class:`RunContext`, what the phases share;
- :mod:`n2q.train.learn`: :class:`Learner` and its :class:`LearnPlan` (-learn / -learn-epoch);
- :mod:`n2q.train.evaluate`: :func:`evaluate` a partition, the test reports;
- :mod:`n2q.train.find_lr`: the learning-rate range test (-find-lr);
- :mod:`n2q.train.fold`: -fuse's BatchNorm folding;
- :mod:`n2q.train.lifecycle`: the quantizer lifecycle calls of a learning run.
"""

from n2q.train.context import RunContext
from n2q.train.evaluate import TargetScore, evaluate, report_test
from n2q.train.find_lr import find_lr
from n2q.train.fold import fold_batchnorm
from n2q.train.learn import Learner, LearnPlan

__all__ = ["LearnPlan", "Learner", "RunContext", "TargetScore", "evaluate", "find_lr",
           "fold_batchnorm", "report_test"]
