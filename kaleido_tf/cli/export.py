"""``kaleido-tf export``: a run's checkpoint as a SavedModel for TF Serving."""

from __future__ import annotations

import argparse
from pathlib import Path

from kaleido_tf.export.task_signatures import TASK_SIGNATURES


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        help="export a trained model as a SavedModel for TF Serving",
        description=(
            "Writes a SavedModel with named-tensor signatures for one task "
            "(serving_default = the task's), the vocabulary as an asset, "
            "export_info.json and signatures.md (inputs, outputs, a TF Serving "
            "REST request body). Dynamic batch size and text length."
        ),
    )
    p.add_argument(
        "--model-dir",
        required=True,
        type=Path,
        help="run folder of `kaleido-tf pretrain` or `kaleido-tf finetune`",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="checkpoint prefix (default: the latest in --model-dir)",
    )
    p.add_argument(
        "--task",
        required=True,
        choices=sorted(TASK_SIGNATURES),
        help="retrieval: match_probability (ITM head); category / subcategory: "
        "category_probabilities (the fine-tuned head of that id); captioning: "
        "caption_ids and caption from the image alone",
    )
    p.add_argument(
        "--data",
        "--data-dir",
        dest="data",
        required=True,
        type=Path,
        help="the prepared folder the model was trained on (its vocab.txt and "
        "manifest.json: lower-casing, max_seq_length, patch layout)",
    )
    p.add_argument("--out", required=True, type=Path, help="SavedModel folder")
    p.add_argument(
        "--with-text-signature",
        action="store_true",
        help="also export <task>_text and tokenize, which take raw description "
        "strings and tokenise them inside the graph (whatever loads the model then "
        "needs the tensorflow-text ops)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out folder"
    )
    return p


def run(args: argparse.Namespace) -> int:
    import shlex

    from kaleido_tf.checkpoints.trained_model import load_trained_model
    from kaleido_tf.export.saved_model_export import (
        SIGNATURES_DOC_NAME,
        check_output_folder,
        export_saved_model,
    )
    from kaleido_tf.manifest import read_manifest

    check_output_folder(args.out, args.overwrite)  # before the slow part
    read_manifest(args.data)  # a clear error for a wrong --data, before loading
    trained = load_trained_model(args.model_dir, args.checkpoint)
    manifest = read_manifest(
        args.data,
        layout=trained.config.model.layout,
        feature_dim=trained.config.model.patch_feature_dim,
    )
    result = export_saved_model(
        trained,
        args.task,
        args.out,
        args.data / manifest["vocab_file"],
        lower_case=manifest["text"]["lower_case"],
        max_seq_length=manifest["max_seq_length"],
        with_text_signature=args.with_text_signature,
        overwrite=args.overwrite,
    )
    print(
        f"exported {args.task} from {trained.checkpoint} (step {trained.step}) to "
        f"{result.path}"
    )
    print(f"signatures: {', '.join(result.signatures)}")
    print(f"documentation: {result.path / SIGNATURES_DOC_NAME}")
    print(f"inspect: saved_model_cli show --dir {shlex.quote(str(result.path))} --all")
    return 0
