"""What the command line says: :class:`Options`, and the table of options (name, field, kind,
help) that ``n2q.cli`` parses and ``n2q.run`` describes. Imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass, field

METRIC_NAMES = ("Sensitivity", "Specificity", "Precision", "NegativePredictiveValue", "MissRate",
                "FallOut", "FalseDiscoveryRate", "FalseOmissionRate", "IU", "Accuracy",
                "F1Score", "Informedness", "Markedness")
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
    OptionSpec("-qat-fuse", "qat_sat", "flag", "with -test: fuse BatchNorm and whatever "
               "quantizers the network has (SAT, LSQ...) into integers (= -qat-sat)"),
    OptionSpec("-fuse", "fuse", "flag", "with -test: fold BatchNorm into the preceding Conv "
               "(float) before testing"),
    OptionSpec("-export", "export", "str", "export the network: ONNX (float, or QDQ when "
               "quantized) into export_ONNX/; N2D2's other types are refused", "T"),
    OptionSpec("-find-lr", "find_lr", "int", "learning-rate range test over N stimuli (1e-6 to "
               "10), writes find_lr_<target>.dat + .png and exits", "N"),
    OptionSpec("-bench", "bench", "flag", "write timings of learning (timings/)"),
    OptionSpec("-nb-test", "nb_test", "int", "with -test: the first N test stimuli only (0 = all)",
               "N"),
    OptionSpec("-test-index", "test_index", "int", "with -test: one stimulus, index I of Test "
               "(-1 = all)", "I"),
    # -- data-parallel learning (n2q.train.distributed, n2q.train.multidev): issue 14 --
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
BY_NAME = {spec.name: spec for spec in OPTION_SPECS}
TEST_ONLY = frozenset({"-qat-sat", "-qat-fuse", "-fuse", "-nb-test", "-test-index", "-w-ignore"})


def describe(options: Options) -> list[str]:
    """N2D2's header: one ``Option -x: meaning [value]`` line per option given."""
    out = []
    for word in options.given:
        name = word.split(" ", 1)[0]
        spec = BY_NAME[name]
        value = getattr(options, spec.dest)
        shown = "" if spec.kind == "flag" else f" [{value}]"
        out.append(f"Option {name}: {spec.help}{shown}")
    return out
