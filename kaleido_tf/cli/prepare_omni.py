"""``kaleido-tf prepare-omni``: Fashion-Gen multi-view products -> Omni tuples.

CommerceMM Omni-Retrieval tuples (``data_prep.pixels.omni_tuples``), with the
image and text settings of ``prepare-pixels``'s config.
Reference: imagebert_interbert_commercemm.md §4.5, §4.8, §4.11 rows 14, 22.
"""

from __future__ import annotations

import argparse

from kaleido_tf.cli.prepare import print_summary, request_fields
from kaleido_tf.cli.prepare_pixels import add_common_arguments, load_pixel_config
from kaleido_tf.cli.progress import log


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``prepare-omni``."""
    p = sub.add_parser(
        "prepare-omni",
        help="build CommerceMM Omni-Retrieval tuples from Fashion-Gen products",
        description=(
            "Omni-Retrieval tuples (source image, source text, target image, target "
            "text, presence flags) from multi-view products: an alternate view "
            "(no text) -> the product (main view + text), and the title alone (grey "
            "image) -> the product. Resumable; shards split across workers."
        ),
    )
    add_common_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Runs ``prepare-omni``."""
    from data_prep.pixels.omni_tuples import OmniPrepareRequest, prepare_omni_tuples

    config, source = load_pixel_config(args.config, args.set)
    request = OmniPrepareRequest(config=config, **request_fields(args, source))
    print_summary(prepare_omni_tuples(request, log=log))
    return 0
