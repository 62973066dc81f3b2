"""Command line: ``n2q NET.ini [options]`` (spec/cli.md). Thin: parse, then hand to n2q.run.

Options keep N2D2's single-dash spelling (``-learn-epoch 10``); ``-opt=value`` is accepted too.
This module must not import torch: ``n2q -h`` answers before any heavy import.
"""

from __future__ import annotations

import difflib
import re
import sys
from typing import Any

from n2q import __version__
from n2q.errors import UserError, quiet_interrupts
from n2q.options import BY_NAME, METRIC_NAMES, OPTION_SPECS, TEST_ONLY, Options, OptionSpec

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
        if spec.dest == "seed":  # < 2^64 (torch's generator), ASCII digits
            from n2q.io.seedfile import parse_seed

            return parse_seed(text, "option -seed")
        # ASCII digits as N2D2 writes them: int() would also take "１２", "1_000" and " 12"
        if not re.fullmatch(r"-?[0-9]{1,18}", text):
            raise UserError(f"option {spec.name} expects an integer, got '{text}'")
        value = int(text)
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
        if not text.isascii():
            raise UserError(f"option -dev: '{text}' is not a device: use a GPU index (0), cpu or "
                            "cuda:N")
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
        spec = BY_NAME.get(name)
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
            text = ""
        if not text:  # "-w=" is not "no -w"
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
    if options.multidev is not None and "-dev" in given:  # issue 14
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


def main(argv: list[str] | None = None) -> int:
    """The n2q command; ``argv=None``: the program itself (sys.argv), which then also exits
    quietly with 130 on a Ctrl-C during Python's shutdown."""
    if argv is not None:
        return _command(list(argv))
    status = _command(sys.argv[1:])
    quiet_interrupts()
    return status


def _command(argv: list[str]) -> int:
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
    from n2q.io.resume import SAVED_STATES, interrupted_message

    SAVED_STATES.clear()  # the Ctrl-C message speaks of this command's saves only
    options = None
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
        print(f"\n{interrupted_message(options.l if options else None)}", file=sys.stderr)
        return 130
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())
