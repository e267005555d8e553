"""The `minigrad` command (also `python -m minigrad`): parses arguments and calls library code.

Subcommands live in COMMANDS; adding one is one call::

    register("bench", "benchmark minigrad against PyTorch", add_arguments=configure, run=main)

where ``configure(parser)`` adds the subcommand's arguments to an argparse parser and
``main(args)`` runs it and returns an exit status (None means 0). A command registered with
``forward=True`` parses its own arguments: everything after its name reaches it as ``args.argv``.
"""
import argparse
import sys
from dataclasses import dataclass
from typing import Callable, Optional

from .train import DATASETS, OPTIMIZERS


@dataclass
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Optional[int]]
    forward: bool = False


COMMANDS: dict = {}


def register(name, help, add_arguments, run, forward=False):
    """Add the subcommand ``minigrad <name>``."""
    COMMANDS[name] = Command(help, add_arguments, run, forward)


# --- minigrad train ------------------------------------------------------------------------------
def _hidden(text):
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip()) if text.strip() else ()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths such as 64,32, found {text!r}")
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, found {text!r}")
    return sizes


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}")
    return value


def _train_arguments(p):
    p.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="digits and iris come with scikit-learn; mnist and fashion_mnist are downloaded once "
                        "(or read from --data-root) [digits]")
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="where mnist / fashion_mnist files are read from or downloaded to [~/.cache/minigrad]")
    p.add_argument("--hidden", type=_hidden, default=(256, 128), metavar="W1,W2,...",
                   help="hidden layer widths, ReLU between layers [256,128]")
    p.add_argument("--epochs", type=_positive, default=20, help="total epochs (a resumed run continues to this) [20]")
    p.add_argument("--batch-size", type=_positive, default=32, help="[32]")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam",
                   help="sgd means momentum 0.9 with Nesterov [adam]")
    p.add_argument("--lr", type=float, default=None, help="learning rate [sgd 0.01, adam/adamw 0.001]")
    p.add_argument("--device", default="auto", help="auto (a GPU when usable), cpu, cuda or cuda:N [auto]")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, the weights and shuffling [0]")
    p.add_argument("--save", metavar="PATH", help="write a checkpoint (safetensors) after every epoch")
    p.add_argument("--resume", metavar="PATH", help="continue training from a checkpoint")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                   help="0 quiet, 1 a progress bar per epoch, 2 one line per epoch [1]")
    p.add_argument("--pipeline-parallel", type=_positive, default=1, metavar="N",
                   help="under mpiexec: split the model's layers into N pipeline stages (1F1B) [1]")
    p.add_argument("--tensor-parallel", type=_positive, default=1, metavar="N",
                   help="under mpiexec: split each pair of Linear layers over N ranks; the ranks left "
                        "over from pipeline x tensor train data-parallel [1]")
    p.add_argument("--micro-batches", type=_positive, default=None, metavar="M",
                   help="micro-batches per batch in the pipeline [2 x pipeline stages]")


def _train(args):
    from .train import train_classifier
    train_classifier(dataset=args.dataset, hidden=args.hidden, epochs=args.epochs, batch_size=args.batch_size,
                     optimizer=args.optimizer, lr=args.lr, device=args.device, seed=args.seed, save=args.save,
                     resume=args.resume, verbose=args.verbose, data_root=args.data_root,
                     pipeline_parallel=args.pipeline_parallel, tensor_parallel=args.tensor_parallel,
                     micro_batches=args.micro_batches)


# --- minigrad info -------------------------------------------------------------------------------
def _info_arguments(p):
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _info(args):
    from .info import format_info, system_info
    info = system_info()
    if args.json:
        import json
        print(json.dumps(info, indent=2))
    else:
        print(format_info(info))


# --- minigrad bench -------------------------------------------------------------------------------
def _bench(args):
    from .bench import main
    return main(args.argv)          # the benchmark script (benchmarks/bench_train.py) parses them


register("train", "train an MLP classifier on digits, iris, MNIST or Fashion-MNIST (digits by default)",
         _train_arguments, _train)
register("info", "show versions, BLAS, GPUs and which kernels minigrad uses", _info_arguments, _info)
register("bench", "benchmark training steps against PyTorch (CPU and GPU): table, JSON and plot "
         "(minigrad bench --help lists its options)", lambda p: None, _bench, forward=True)


def build_parser():
    from . import __version__
    parser = argparse.ArgumentParser(prog="minigrad", description="minigrad: a small, fast autodiff framework")
    parser.add_argument("--version", action="version", version=f"minigrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        cmd.add_arguments(sub.add_parser(name, help=cmd.help, description=cmd.help, add_help=not cmd.forward))
    return parser


def main(argv=None):
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if COMMANDS[args.command].forward:
        args.argv = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return COMMANDS[args.command].run(args) or 0
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as e:
        from .distributed.comm import launcher_world_size
        if launcher_world_size() > 1:
            raise               # an uncaught error on one rank aborts every rank instead of leaving them waiting
        print(f"minigrad {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
