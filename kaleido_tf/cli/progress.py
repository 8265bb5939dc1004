"""Console helpers shared by subcommands: progress on/off and plain log lines."""

from __future__ import annotations

import argparse
import sys


def progress_enabled(args: argparse.Namespace) -> bool:
    """Progress bars show on a terminal unless ``--quiet``."""
    return not args.quiet and sys.stderr.isatty()


def log(message: str) -> None:
    """One log line on stderr (safe beside a tqdm bar)."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)
