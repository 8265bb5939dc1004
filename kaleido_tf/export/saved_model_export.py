"""``export_saved_model``: a trained model as a SavedModel that TF Serving loads as is.

The export folder holds ``saved_model.pb``, ``variables/``, ``assets/vocab.txt`` (the
vocabulary as a ``tf.saved_model.Asset``), ``export_info.json`` (source checkpoint,
step, task, every signature's inputs and outputs) and ``signatures.md`` (the same
for people, with a TF Serving REST request body). It is written into a temporary
folder beside ``out_dir`` and renamed into place, so ``out_dir`` is either absent,
the previous export or the complete new one.

Reference: DESIGN.md §7; issue #6, "Export".
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from kaleido_tf.errors import ConfigError, KaleidoError

EXPORT_INFO_NAME = "export_info.json"
SIGNATURES_DOC_NAME = "signatures.md"
EXAMPLE_DESCRIPTION = "Slim black leather biker jacket. Silver-tone zip closure."


class ExportExistsError(KaleidoError):
    """The output folder already holds something and ``overwrite`` was not given."""

    exit_code = 2


@dataclasses.dataclass
class ExportResult:
    """What ``export_saved_model`` wrote.

    Attributes:
        path: The SavedModel folder.
        signatures: Signature names, ``serving_default`` first.
        info: The content of ``export_info.json``.
    """

    path: Path
    signatures: list[str]
    info: dict[str, Any]


def export_saved_model(
    trained: Any,
    task: str,
    out_dir: str | Path,
    vocab_path: str | Path,
    *,
    lower_case: bool = True,
    max_seq_length: int | None = None,
    with_text_signature: bool = False,
    overwrite: bool = False,
) -> ExportResult:
    """Exports ``trained.model`` with the serving signatures of ``task``.

    Args:
        trained: A ``checkpoints.trained_model.TrainedModel`` (config, VLModel,
            checkpoint, step).
        task: A key of ``task_signatures.TASK_SIGNATURES`` (``retrieval``,
            ``category``, ``subcategory``).
        out_dir: The SavedModel folder to create (for TF Serving, a numbered
            version folder such as ``models/kaleido/1``).
        vocab_path: The ``vocab.txt`` the model's data was tokenised with.
        lower_case: Whether that tokenisation lower-cased (manifest
            ``text.lower_case``); used by the text-in signature.
        max_seq_length: T at most for the text-in signature, including [CLS] and
            [SEP] (manifest ``max_seq_length``); default: the encoder's
            ``max_sequence_length``.
        with_text_signature: Also export ``<task>_text`` and ``tokenize``, which
            take raw description strings.
        overwrite: Replace an existing ``out_dir``.

    Returns:
        An ExportResult.

    Raises:
        ExportExistsError: ``out_dir`` exists and ``overwrite`` is False.
        ConfigError: Unknown task, a model without the task's head, or a
            ``max_seq_length`` longer than the encoder allows.
        DataError: An unusable vocabulary file.
    """
    import tensorflow as tf

    import kaleido_tf
    from kaleido_tf.export.serving_signatures import ServingModule
    from kaleido_tf.export.task_signatures import get_task_signature
    from kaleido_tf.export.text_signature import ServingVocabulary

    out_dir = Path(out_dir)
    check_output_folder(out_dir, overwrite)
    model, config = trained.model, trained.config
    task_signature = get_task_signature(task, config)
    encoder_max = int(model.encoder.max_sequence_length)
    if max_seq_length is None:
        max_seq_length = encoder_max
    if max_seq_length > encoder_max:
        raise ConfigError(
            f"max_seq_length {max_seq_length} (of the data) exceeds the encoder's "
            f"max_sequence_length {encoder_max}: export with the data the model "
            "was trained on"
        )
    vocabulary = ServingVocabulary(vocab_path, lower_case, max_seq_length)
    module = ServingModule(
        model,
        task_signature,
        vocabulary,
        num_patches=model.encoder.num_patches,
        feature_dim=config.model.patch_feature_dim,
        max_sequence_length=encoder_max,
        with_text_signature=with_text_signature,
    )
    signatures = module.signatures()
    docs = module.signature_docs()
    info = {
        "kaleido_tf_version": kaleido_tf.__version__,
        "tensorflow_version": tf.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "system": getattr(config, "system", None),
        "task": task,
        "checkpoint": str(trained.checkpoint),
        "step": int(trained.step),
        "serving_default": task,
        "patches": {
            "layout": config.model.layout,
            "num_patches": module.num_patches,
            "feature_dim": module.feature_dim,
        },
        "max_sequence_length": encoder_max,
        "vocabulary": {
            "asset": "assets/" + Path(vocab_path).name,
            "sha256": hashlib.sha256(Path(vocab_path).read_bytes()).hexdigest(),
            "size": vocabulary.vocab_size,
            "lower_case": vocabulary.lower_case,
            "max_seq_length": vocabulary.max_seq_length,
        },
        "signatures": docs,
    }

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        (tmp / EXPORT_INFO_NAME).write_text(
            json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (tmp / SIGNATURES_DOC_NAME).write_text(
            signatures_markdown(info, out_dir), encoding="utf-8"
        )
        _move_into_place(tmp, out_dir, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    names = ["serving_default"] + sorted(
        n for n in signatures if n != "serving_default"
    )
    return ExportResult(out_dir, names, info)


def check_output_folder(out_dir: str | Path, overwrite: bool) -> None:
    """Raises ExportExistsError when ``out_dir`` exists and ``overwrite`` is False."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ExportExistsError(
            f"{out_dir} already exists: pass --overwrite to replace it, or choose "
            "another --out (for TF Serving, a new version folder)"
        )


def _move_into_place(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    # The old export moves aside only once the new one is complete.
    check_output_folder(out_dir, overwrite)
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def rest_example_instance(inputs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """One TF Serving row-format instance, each value a ``<dtype [dims]>`` placeholder.

    The batch dimension is dropped (TF Serving stacks the instances into it); the
    dynamic text length reads ``T``. A string input gets an example description.

    Args:
        inputs: A signature's ``inputs`` in ``export_info.json``.

    Returns:
        Input name -> placeholder, e.g. ``"<float32 [55, 2048]>"``.
    """
    out = {}
    for name, doc in inputs.items():
        if doc["dtype"] == "string":
            out[name] = EXAMPLE_DESCRIPTION
            continue
        dims = ["T" if d == -1 else str(d) for d in doc["shape"][1:]]
        out[name] = f"<{doc['dtype']} [{', '.join(dims)}]>"
    return out


def signatures_markdown(info: dict[str, Any], out_dir: Path) -> str:
    """``signatures.md``: every signature's inputs and outputs, and how to call it.

    Args:
        info: The ``export_info.json`` content.
        out_dir: The export folder (for the commands shown).

    Returns:
        Markdown text.
    """
    task = info["task"]
    lines = [
        f"# SavedModel: Kaleido-BERT, task `{task}`",
        "",
        f"Exported from `{info['checkpoint']}` (step {info['step']}) by kaleido_tf "
        f"{info['kaleido_tf_version']} with TensorFlow {info['tensorflow_version']}.",
        f"`serving_default` is `{task}`. B (batch) and T (text length) are dynamic "
        "(-1): each request may pad its texts to its own longest text.",
        f"P = {info['patches']['num_patches']} patches ({info['patches']['layout']} "
        f"layout), D = {info['patches']['feature_dim']}; T <= "
        f"{info['max_sequence_length']}. The vocabulary is "
        f"`{info['vocabulary']['asset']}` (lower_case = "
        f"{str(info['vocabulary']['lower_case']).lower()}).",
        "",
    ]
    for name, doc in info["signatures"].items():
        lines += [f"## `{name}`", "", doc["summary"], ""]
        lines += ["| | name | dtype | shape | meaning |", "|---|---|---|---|---|"]
        for kind in ("inputs", "outputs"):
            for key, t in doc[kind].items():
                lines.append(
                    f"| {kind[:-1]} | `{key}` | {t['dtype']} | {t['shape']} | "
                    f"{t['meaning']} |"
                )
        lines.append("")
    lines += [
        "## TF Serving",
        "",
        "Copy this folder to a version folder of a model base path, e.g. "
        "`models/kaleido/1/`, and start "
        "`tensorflow_model_server --rest_api_port=8501 --model_name=kaleido "
        "--model_base_path=$PWD/models/kaleido`.",
        "",
        "REST request, row format: one instance per example, each a JSON object of "
        "named inputs without the batch dimension. TF Serving stacks the instances "
        "into the batch, so every instance of one request must have the same T (pad "
        "`input_ids` with 0 and `input_mask` with 0). Replace each `<dtype [dims]>` "
        "by a nested list of that shape:",
        "",
    ]
    examples = [task]
    if task + "_text" in info["signatures"]:
        examples.append(task + "_text")
        lines += [
            f"The text-in signatures (`{task}_text`, `tokenize`) use tensorflow-text "
            "ops (CaseFoldUTF8, NormalizeUTF8, RegexSplitWithOffsets, "
            "WordpieceTokenizeWithOffsets): the loading process needs them "
            "(Python: `import tensorflow_text` before `tf.saved_model.load`; a "
            "model server built with the tensorflow-text ops).",
            "",
        ]
    for name in examples:
        body = {
            "signature_name": name,
            "instances": [rest_example_instance(info["signatures"][name]["inputs"])],
        }
        lines += ["```json", json.dumps(body, indent=2), "```", ""]
    lines += [
        "```sh",
        "curl -s -X POST http://localhost:8501/v1/models/kaleido:predict "
        "-d @request.json",
        "```",
        "",
        'The reply is `{"predictions": [...]}`, one object of named outputs per '
        "instance. Inspect the signatures with:",
        "",
        "```sh",
        f"saved_model_cli show --dir {out_dir} --all",
        "```",
        "",
    ]
    return "\n".join(lines)
