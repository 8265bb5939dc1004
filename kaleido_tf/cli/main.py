"""``kaleido-tf``: one console script with a subcommand per stage (STYLE.md §2.8).

TensorFlow is imported inside each subcommand, so ``--help`` returns at once. Errors
derived from KaleidoError print as one line on stderr (exit 2 for usage and config
errors, 1 otherwise); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

import kaleido_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from kaleido_tf.cli import (
    align,
    demo,
    evaluate,
    export,
    finetune,
    import_easytransfer,
    inspect,
    mine_negatives,
    prepare,
    prepare_omni,
    prepare_pixels,
    prepare_regions,
    pretrain,
    synth,
)
from kaleido_tf.errors import KaleidoError

SUBCOMMANDS = {
    "synth": synth,
    "prepare": prepare,
    "prepare-regions": prepare_regions,
    "prepare-pixels": prepare_pixels,
    "prepare-omni": prepare_omni,
    "align": align,
    "pretrain": pretrain,
    "finetune": finetune,
    "evaluate": evaluate,
    "export": export,
    "import-easytransfer": import_easytransfer,
    "mine-negatives": mine_negatives,
    "demo": demo,
    "inspect": inspect,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="kaleido-tf",
        description="Kaleido-BERT and its fashion vision-language siblings on TF2.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {kaleido_tf.__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        p = module.add_parser(sub)
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return int(args.run(args) or 0)
    except KaleidoError as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
