"""``kaleido-tf prepare-regions``: Fashion-Gen HDF5 -> detector regions -> TFRecords.

ImageBERT / InterBERT records (imagebert_interbert_commercemm.md §2.2, §2.10 item
1): up to R regions per image from a TF2 detection SavedModel (+ RoIAlign on the
project's backbone) or from bottom-up-attention TSV / NPZ feature files.
``--export-reference-detector DIR`` writes the small colour detector the demo uses.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kaleido_tf.cli.prepare import (
    add_seed_argument,
    add_shard_arguments,
    add_source_arguments,
    load_config,
    print_summary,
    request_fields,
    weights_path,
)
from kaleido_tf.cli.progress import log
from kaleido_tf.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "prepare-regions",
        help="convert a Fashion-Gen .h5 file into region (RoI) TFRecords + manifest",
        description=(
            "ImageBERT / InterBERT inputs: the top-R detector regions of each image "
            "(pooled features, boxes, 5-D locations, class labels) with the same "
            "text fields as `prepare`. Regions come from a TF2 detection SavedModel "
            "(Object Detection API signature; features by RoIAlign on the config's "
            "backbone) or from bottom-up-attention TSV / NPZ feature files keyed by "
            "'<product id>_<pose index>'. Resumable; shards split across workers."
        ),
    )
    add_source_arguments(
        p,
        "fashiongen_regions100",
        "regions.class_distribution=true",
        required=False,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--detector",
        type=Path,
        metavar="SAVEDMODEL_DIR",
        help="TF2 detection SavedModel (serving_default: input_tensor -> "
        "detection_boxes/scores/classes); needs --backbone-weights",
    )
    source.add_argument(
        "--bottom-up-tsv",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="bottom-up-attention TSV file(s) (base64 boxes, features, cls_prob)",
    )
    source.add_argument(
        "--bottom-up-npz",
        type=Path,
        metavar="DIR",
        help="folder of <image_id>.npz files (x/features, bbox, image_w, image_h)",
    )
    source.add_argument(
        "--export-reference-detector",
        type=Path,
        metavar="DIR",
        help="only export the training-free colour detector (demo, tests) as a "
        "SavedModel with class_names.txt, then exit",
    )
    p.add_argument(
        "--backbone-weights",
        help="with --detector: local .h5 weights of the RoIAlign backbone without "
        "its top, or 'none' for random weights (demo and tests only)",
    )
    p.add_argument(
        "--class-names",
        type=Path,
        help="object class names, one per line (e.g. Visual Genome objects_vocab.txt)",
    )
    add_shard_arguments(p)
    add_seed_argument(p)
    return p


def load_region_config(name_or_path: str, overrides: list[str]):
    """Resolves ``--config`` and ``--set`` into a RegionPrepareConfig and its source."""
    from kaleido_tf.config.data_prep import RegionPrepareConfig

    return load_config(RegionPrepareConfig, name_or_path, overrides)


def run(args: argparse.Namespace) -> int:
    if args.export_reference_detector is not None:
        from data_prep.regions.reference_detector import export_reference_detector

        path = export_reference_detector(args.export_reference_detector)
        print(f"reference detector: {path}")
        return 0
    from data_prep.regions.pipeline import RegionPrepareRequest, prepare_regions

    if args.h5 is None or args.out is None:
        raise ConfigError("prepare-regions needs --h5 FILE and --out DIR")
    config, source = load_region_config(args.config, args.set)
    weights = None
    if args.detector is not None:
        if args.backbone_weights is None:
            raise ConfigError(
                "--detector needs --backbone-weights FILE (the RoIAlign backbone's "
                "notop .h5) or --backbone-weights none (random; demo and tests only)"
            )
        weights = weights_path(args.backbone_weights)
        kind, paths = "savedmodel", (args.detector,)
    elif args.bottom_up_tsv is not None:
        kind, paths = "bottom_up_tsv", tuple(args.bottom_up_tsv)
    else:
        kind, paths = "bottom_up_npz", (args.bottom_up_npz,)
    if args.backbone_weights is not None and args.detector is None:
        raise ConfigError("--backbone-weights only applies with --detector")
    request = RegionPrepareRequest(
        config=config,
        source_kind=kind,
        source_paths=paths,
        backbone_weights=weights,
        class_names_path=args.class_names,
        seed=args.seed,
        **request_fields(args, source),
    )
    print_summary(prepare_regions(request, log=log))
    return 0
