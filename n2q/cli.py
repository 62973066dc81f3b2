"""Command line: ``n2q NET.ini [options]`` (spec/cli.md). Thin: parse, then hand to n2q.run.

Options keep N2D2's single-dash spelling (``-learn-epoch 10``); ``-opt=value`` is accepted too.
This module must not import torch: ``n2q -h`` answers before any heavy import.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field, fields
from typing import Any

from n2q import __version__
from n2q.errors import UserError

METRIC_NAMES = ("Sensitivity", "Specificity", "Precision", "NegativePredictiveValue", "MissRate",
                "FallOut", "FalseDiscoveryRate", "FalseOmissionRate", "IU", "Accuracy",
                "F1Score", "Informedness", "Markedness")  # = n2q.train.metrics.METRICS
EXPORT_TYPES = ("ONNX", "CPP", "CPP_TensorRT", "CPP_cuDNN", "CPP_STM32", "C_HLS")


@dataclass
class Options:
    """Everything the command line says; field names follow the option names."""

    network: str = ""
    learn: int = 0
    learn_epoch: int = 0
    log: int = 1000
    log_epoch: int = 1
    report: int = 100
    valid_metric: str = "Sensitivity"
    test: bool = False
    w: str | None = None
    w_ignore: bool = False
    l: str | None = None  # noqa: E741 (N2D2's option name)
    seed: int = 0
    dev: str = "0"
    qat_sat: bool = False
    fuse: bool = False
    export: str | None = None
    find_lr: int = 0
    bench: bool = False
    nb_test: int = 0
    test_index: int = -1
    debug: bool = False
    # data-parallel learning and GPU fast path (issue 14, n2q.train.distributed)
    multidev: str | None = None
    sync_bn: bool = False
    compile: bool = False
    dist_timeout: int = 1800
    given: list[str] = field(default_factory=list)  # options as written, for the run's header


@dataclass(frozen=True)
class OptionSpec:
    name: str      # as typed, e.g. "-learn-epoch"
    dest: str      # Options field
    kind: str      # "int" | "str" | "flag" | "metric" | "dev"
    help: str
    value: str = ""  # placeholder of the value in the help


OPTION_SPECS: tuple[OptionSpec, ...] = (
    OptionSpec("-learn", "learn", "int", "learn on N stimuli drawn at random with replacement "
               "from Learn", "N"),
    OptionSpec("-learn-epoch", "learn_epoch", "int", "learn N epochs, each a shuffled full pass "
               "over Learn (a resumed run stops at epoch N)", "N"),
    OptionSpec("-log", "log", "int", "with -learn: stimuli between two validations", "N"),
    OptionSpec("-log-epoch", "log_epoch", "int", "with -learn-epoch: epochs between two "
               "validations", "N"),
    OptionSpec("-report", "report", "int", "stimuli between two progress updates", "N"),
    OptionSpec("-valid-metric", "valid_metric", "metric", "metric that picks the best model: "
               + ", ".join(METRIC_NAMES), "M"),
    OptionSpec("-test", "test", "flag", "run the Test partition (with the best weights of this "
               "run reloaded first)"),
    OptionSpec("-w", "w", "str", "load a weights folder first (missing files: notice; "
               "-w /dev/null loads nothing)", "DIR"),
    OptionSpec("-w-ignore", "w_ignore", "flag", "with -test: tolerate missing files when "
               "reloading the best weights"),
    OptionSpec("-l", "l", "str", "load a full saved state (net_state/...) and resume", "DIR"),
    OptionSpec("-seed", "seed", "int", "random seed (written to seed.dat); 0 = time based, or "
               "seed.dat's for a run that does not learn", "N"),
    OptionSpec("-dev", "dev", "dev", "device: GPU index, cpu or cuda:N (not given: the GPU for "
               "DefaultModel=*_CUDA when there is one, else the CPU)", "D"),
    OptionSpec("-qat-sat", "qat_sat", "flag", "with -test: fuse BatchNorm and SAT quantizers into "
               "an integer-only network before testing"),
    OptionSpec("-fuse", "fuse", "flag", "with -test: fold BatchNorm into the preceding Conv "
               "(float) before testing"),
    OptionSpec("-export", "export", "str", "export the network: not supported yet (N2D2's "
               "types: " + ", ".join(EXPORT_TYPES) + ")", "T"),
    OptionSpec("-find-lr", "find_lr", "int", "learning-rate range test over N stimuli (1e-6 to "
               "10), writes find_lr_<target>.dat + .png and exits", "N"),
    OptionSpec("-bench", "bench", "flag", "write timings of learning (timings/)"),
    OptionSpec("-nb-test", "nb_test", "int", "with -test: the first N test stimuli only (0 = all)",
               "N"),
    OptionSpec("-test-index", "test_index", "int", "with -test: one stimulus, index I of Test "
               "(-1 = all)", "I"),
    # -- data-parallel learning (n2q.train.distributed, n2q.train.multidev) --
    OptionSpec("-multidev", "multidev", "str", "learn on several GPUs, one process each, "
               "started by n2q (N2D2's spelling; torchrun --nproc_per_node=N -m n2q is the "
               "same); without CUDA: that many CPU processes", "0,1,..."),
    OptionSpec("-sync-bn", "sync_bn", "flag", "with several processes: BatchNorm statistics "
               "of the global batch while learning (default: each process's own batch)"),
    OptionSpec("-compile", "compile", "flag", "learn with a compiled step (torch.compile): "
               "same numbers up to float rounding, slow first batches"),
    OptionSpec("-dist-timeout", "dist_timeout", "int", "with several processes: seconds a "
               "process waits for the others before the run stops", "S"),
    OptionSpec("-learn-stdp", "", "refused", "spiking (STDP) learning: not supported by n2q",
               "N"),
    OptionSpec("--debug", "debug", "flag", "print tracebacks of user errors too"),
)
_BY_NAME = {spec.name: spec for spec in OPTION_SPECS}
TEST_ONLY = frozenset({"-qat-sat", "-fuse", "-nb-test", "-test-index", "-w-ignore"})
_HELP_NAMES = ("-h", "--help", "-help")


def help_text() -> str:
    defaults = Options()
    lines = [f"usage: n2q NET.ini|NET.onnx [options]   (n2q {__version__})", "",
             "Learn, test and quantize networks described by N2D2 INI files.", "", "options:"]
    for spec in OPTION_SPECS:
        left = f"  {spec.name} {spec.value}".rstrip()
        default = "" if spec.kind in ("flag", "refused") else getattr(defaults, spec.dest)
        shown = f" [{default}]" if default not in ("", None) else ""
        lines.append(f"{left:<22} {spec.help}{shown}")
    lines.append(f"{'  -h, --help':<22} show this help and exit")
    lines.append(f"{'  --version':<22} show the version and exit")
    return "\n".join(lines)


def _closest(word: str) -> str:
    names = [s.name for s in OPTION_SPECS] + ["--help", "--version"]
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.5)
    return f" (did you mean {close[0]}?)" if close else " (n2q -h lists the options)"


def _convert(spec: OptionSpec, text: str) -> Any:
    if spec.kind == "int":
        try:
            value = int(text)
        except ValueError:
            raise UserError(f"option {spec.name} expects an integer, got '{text}'") from None
        if value < 0 and spec.dest != "test_index":
            raise UserError(f"option {spec.name} expects a number >= 0, got {value}")
        return value
    if spec.kind == "metric":
        if text not in METRIC_NAMES:
            close = difflib.get_close_matches(text, METRIC_NAMES, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UserError(f"option -valid-metric: unknown metric '{text}'{hint}; valid: "
                            + ", ".join(METRIC_NAMES))
        return text
    if spec.kind == "dev":
        return _check_device(text)
    return text


def _check_device(text: str) -> str:
    low = text.strip().lower()
    if low == "cpu" or low.isdigit():
        return low
    if low.startswith("cuda") and (low == "cuda" or (low[4:5] == ":" and low[5:].isdigit())):
        return low
    raise UserError(f"option -dev: '{text}' is not a device: use a GPU index (0), cpu or cuda:N")


def parse_args(argv: list[str]) -> Options:
    """N2D2-style options -> Options; UserError on any mistake."""
    options = Options()
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if not word.startswith("-") or word == "-":
            if options.network:
                raise UserError(f"one network file only: got '{options.network}' and '{word}'")
            options.network = word
            continue
        name, eq, inline = word.partition("=")
        spec = _BY_NAME.get(name)
        if spec is None:
            raise UserError(f"unknown option {name}{_closest(name)}")
        if spec.kind == "refused":
            raise UserError(f"option {name}: spiking models and STDP learning are not supported "
                            "by n2q (Frame models only)")
        if spec.kind == "flag":
            if eq:
                raise UserError(f"option {name} takes no value")
            setattr(options, spec.dest, True)
            options.given.append(name)
            continue
        if eq:
            text = inline
        elif i < len(argv):
            text = argv[i]
            i += 1
        else:
            raise UserError(f"option {name} expects a value ({spec.value}): {name} {spec.value}")
        setattr(options, spec.dest, _convert(spec, text))
        options.given.append(f"{name} {text}")
    _check_consistency(options)
    return options


def _check_consistency(options: Options) -> None:
    if not options.network:
        raise UserError("missing the network file: n2q NET.ini [options] (n2q -h for help)")
    if options.learn and options.learn_epoch:
        raise UserError("-learn and -learn-epoch are exclusive: choose stimuli or epochs")
    if options.learn_epoch and options.log_epoch < 1:
        raise UserError("option -log-epoch must be >= 1")
    if options.learn and options.log < 1:
        raise UserError("option -log must be >= 1")
    if options.report < 1:
        raise UserError("option -report must be >= 1")
    if options.w and options.l:
        raise UserError("-w and -l are exclusive: -l already loads the weights of the state")
    if options.test_index < -1:
        raise UserError(f"option -test-index expects an index >= 0 (or -1 = all), got "
                        f"{options.test_index}")
    given = {word.split(" ", 1)[0] for word in options.given}
    for name in sorted(TEST_ONLY & given):
        if not options.test:
            raise UserError(f"{name} acts on the test phase: add -test")
    if options.find_lr and (options.learn or options.learn_epoch or options.test):
        raise UserError("-find-lr exits after the range test: learn or test in another command")
    if options.multidev is not None and "-dev" in given:
        raise UserError("-multidev and -dev are exclusive: -multidev names every device")
    if options.dist_timeout < 1:
        raise UserError("option -dist-timeout must be >= 1 (seconds)")
    if options.nb_test and options.test_index >= 0:
        raise UserError("-nb-test and -test-index are exclusive: test N stimuli or one")
    _notice_idle(options, given)


def _notice_idle(options: Options, given: set[str]) -> None:
    """Learning options that no phase of this command reads (N2D2 scripts may hold them)."""
    from n2q.errors import notice

    learning = bool(options.learn or options.learn_epoch)
    idle = {"-log": (not options.learn, "-learn"),
            "-log-epoch": (not options.learn_epoch, "-learn-epoch"),
            "-bench": (not learning, "-learn or -learn-epoch")}
    for name, (is_idle, needed) in idle.items():
        if is_idle and name in given:
            notice(f"{name} is ignored without {needed}")


def describe(options: Options) -> list[str]:
    """N2D2's header: one ``Option -x: meaning [value]`` line per option given."""
    out = []
    for word in options.given:
        name = word.split(" ", 1)[0]
        spec = _BY_NAME[name]
        value = getattr(options, spec.dest)
        shown = "" if spec.kind == "flag" else f" [{value}]"
        out.append(f"Option {name}: {spec.help}{shown}")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in _HELP_NAMES for a in argv):
        print(help_text())
        return 0
    if "--version" in argv:
        print(f"n2q {__version__}")
        return 0
    debug = "--debug" in argv
    if debug:
        import n2q.errors

        n2q.errors.DEBUG = True  # debug() lines of every package
    try:
        options = parse_args(argv)
        if options.multidev is not None:  # issue 14: n2q starts one process per device
            from n2q.train.multidev import launch, launched, parse_devices

            devices = parse_devices(options.multidev)
            if not launched():
                return launch(argv, devices)
        from n2q.run import run

        run(options)
    except UserError as error:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"Error: {_one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted: every folder written so far is complete "
              "(resume with -l net_state or -l net_state_validation).", file=sys.stderr)
        return 130
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def option_fields() -> list[str]:
    return [f.name for f in fields(Options)]
