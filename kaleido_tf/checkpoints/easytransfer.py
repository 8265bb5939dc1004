"""The released EasyTransfer TF1 checkpoints into this project's models, by name map.

FashionBERT's ``model.ckpt-54198`` (scope ``image_bert_pre_trained_model/``) and
Kaleido-BERT's ``kaleidobert.ckpt-50683`` (``kaleido_bert_pre_trained_model/``):
Estimator checkpoints whose ``bert/…`` and ``cls/predictions|seq_relationship/…``
names are Google BERT's (``google_bert.py`` maps those, through its table), plus
the image embeddings and image heads listed in released_checkpoints.md §2-3, which
this module maps. The recipe of released_checkpoints.md §9: drop optimizer state
(any name containing ``Adam``, ``beta1_power``, ``beta2_power``, ``global_step``),
strip a leading ``*pre_trained_model/`` scope, map every remaining name
explicitly, transpose only the ``[out, in]`` classifiers, check every shape, and
report what was loaded, unused, ignored and left at random init (``LoadReport``).

Differences from Google BERT: ``cls/seq_relationship`` is already the ITM head
with index 1 = match (no class swap, released_checkpoints.md §4 item 9); Kaleido's
five per-level type tables fill the rows 1..5 of one segment table (a row past a
table's size is zero, as the released one-hot lookup gives, §8 item 3); Kaleido's
box projection ``position_dense`` was trained on the released unnormalised integer
locations (import the released files with ``import-easytransfer``, which keeps
them).

Reference: released_checkpoints.md; prior_art.md §1.8.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from kaleido_tf.checkpoints import google_bert as gb
from kaleido_tf.checkpoints.report import LoadReport
from kaleido_tf.errors import CheckpointError
from kaleido_tf.heads.classification_head import ClassificationHead
from kaleido_tf.heads.level_classification_head import LevelClassificationHead
from kaleido_tf.heads.masked_patch_head import MaskedPatchHead

logger = logging.getLogger(__name__)

FASHION_BERT = "fashion_bert"
KALEIDO_BERT = "kaleido_bert"
# Kaleido level k (1..5): scope and weight-name stem (the released spellings,
# "blank_embeddings/blankmask_*" included).
KALEIDO_LEVELS = (
    ("rotation_embeddings", "rotation"),
    ("jigsaw_embeddings", "jigsaw"),
    ("camouflage_embeddings", "camouflage"),
    ("greymask_embeddings", "greymask"),
    ("blank_embeddings", "blankmask"),
)
# Kaleido head id -> (scope, weights, bias); the released typos "jiasaw" and
# "blanmask" are the names in the files.
KALEIDO_CLASSIFIERS = {
    "rr": ("cls/img_rotation/", "rotation_output_weights", "rotation_output_bias"),
    "jps": ("cls/img_jigsaw/", "jiasaw_output_weights", "jigsaw_output_bias"),
    "cp": (
        "cls/img_camouflage/",
        "camouflage_output_weights",
        "camouflage_output_bias",
    ),
}
KALEIDO_RECONSTRUCTION = {
    "g2cm": "cls/img_greymask/greymask_output_weights",
    "b2cm": "cls/img_blankmask/blanmask_output_weights",
}
# Kaleido fine-tuning classifiers (graph root, released_checkpoints.md §3.5).
FINETUNE_CLASSIFIERS = {
    "category": "catepred_dense",
    "subcategory": "subcatepred_dense",
}


@dataclasses.dataclass(frozen=True)
class _Item:
    """One model variable and the checkpoint variables that set it.

    Attributes:
        variable: The model variable.
        sources: Checkpoint names (after the scope is stripped) it is built from.
        convert: (values of ``sources``) -> the variable's value; None: copy the
            single source unchanged.
        how: What ``convert`` does, for the report ("" = copied).
        group: The part the item belongs to ("embeddings", "encoder layer 3").
        required: The load fails when the checkpoint lacks the whole group.
    """

    variable: tf.Variable
    sources: tuple[str, ...]
    convert: Callable[[list[np.ndarray]], np.ndarray] | None
    how: str
    group: str
    required: bool


def _is_optimizer_state(name: str) -> bool:
    # EasyTransfer's own loader skips exactly these (released_checkpoints.md §1.3).
    return "Adam" in name or name in ("beta1_power", "beta2_power", "global_step")


def strip_scope(name: str) -> str:
    """``image_bert_pre_trained_model/bert/x`` -> ``bert/x`` (bare names unchanged)."""
    first, sep, rest = name.partition("/")
    return rest if sep and first.endswith("pre_trained_model") else name


def _read_config(prefix: Path) -> dict[str, Any] | None:
    """The release's ``config.json`` beside the checkpoint, if there is one."""
    path = prefix.parent / "config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None


def _bert_sizes(shapes: dict[str, tuple[int, ...]], prefix: Path) -> dict[str, Any]:
    """The BERT sizes the checkpoint's shapes reveal (released_checkpoints.md §3.4)."""
    try:
        v, h = shapes["bert/embeddings/word_embeddings"]
        p, _ = shapes["bert/embeddings/position_embeddings"]
        t, _ = shapes["bert/embeddings/token_type_embeddings"]
        _, inner = shapes["bert/encoder/layer_0/intermediate/dense/kernel"]
    except KeyError as e:
        raise CheckpointError(
            f"{prefix} has no {e.args[0]}: not a FashionBERT / Kaleido-BERT release "
            "checkpoint (or an incomplete one)"
        ) from None
    layers = 0
    while f"bert/encoder/layer_{layers}/output/dense/kernel" in shapes:
        layers += 1
    return {
        "vocab_size": v,
        "hidden_size": h,
        "num_layers": layers,
        "inner_dim": inner,
        "max_sequence_length": p,
        "type_vocab_size": t,
    }


def _bert_items(encoder, heads: dict[str, Any], bert: dict[str, Any]) -> list[_Item]:
    """Text embeddings, blocks, pooler, MLM and ITM through Google's name table."""
    items = []
    heads_n = encoder.num_attention_heads
    for entry in gb._name_map(encoder, heads, bert):
        conversion = entry.conversion
        if conversion == "nsp_kernel":  # [2, H] -> [H, 2]; index 1 is already ITM
            conversion = "transpose"
        elif conversion == "nsp_bias":
            conversion = ""
        target = tuple(entry.variable.shape)

        def convert(values, conversion=conversion, target=target):
            if conversion == "transpose":
                return values[0].T
            return gb._convert(conversion, values[0], target, heads_n)

        if conversion in ("split_heads", "merge_heads"):
            how = "reshaped to " + str(list(target))
        elif conversion == "transpose":
            how = "transposed [out, in] -> [in, out]"
        elif conversion == "first_rows":
            how = f"first {target[0]} rows"
        else:
            how = ""
        items.append(
            _Item(
                entry.variable,
                (entry.source,),
                convert if conversion else None,
                how,
                entry.group,
                entry.required,
            )
        )
    return items


def _copy(variable, name, group, required=True) -> _Item:
    return _Item(variable, (name,), None, "", group, required)


def _transposed(variable, name, group) -> _Item:
    return _Item(
        variable,
        (name,),
        lambda v: v[0].T,
        "transposed [out, in] -> [in, out]",
        group,
        False,
    )


def _fashion_bert_items(encoder, heads) -> list[_Item]:
    emb = encoder.patch_embedding
    if emb.position_type != "index" or len(emb.image_projections) != 1:
        raise CheckpointError(
            "FashionBERT's release has a 64-row patch position table and one "
            "projection: build the model from configs/fashion_bert/*.yaml "
            "(system fashion_bert)"
        )
    scope, group = "bert/image_embeddings/", "patch embeddings"
    rows = emb.segment_table.shape[0]

    def type_rows(values):  # [ptv, H] -> [2, H]; row 1 is the one used
        table = values[0]
        out = np.zeros((rows, table.shape[1]), table.dtype)
        n = min(rows, table.shape[0])
        out[:n] = table[:n]
        return out

    items = [
        _copy(emb.image_projections[0].kernel, scope + "image_projector", group),
        _copy(emb.position_table, scope + "patch_position_embeddings", group),
        _Item(
            emb.segment_table,
            (scope + "patch_type_embeddings",),
            type_rows,
            "rows 0..1 (patches use type 1)",
            group,
            True,
        ),
        _copy(emb.layer_norms[0].gamma, scope + "ImageEmbLayerNorm/gamma", group),
        _copy(emb.layer_norms[0].beta, scope + "ImageEmbLayerNorm/beta", group),
    ]
    for head_id, head in heads.items():
        if isinstance(head, MaskedPatchHead) and head_id == "mpm":
            items.append(
                _copy(
                    head.logits.kernel,
                    "cls/img_predictions/output_weights",
                    f"head {head_id!r}",
                    False,
                )
            )
    return items


def _kaleido_items(encoder, heads) -> list[_Item]:
    emb = encoder.patch_embedding
    if (
        emb.position_type != "box"
        or len(emb.image_projections) != 5
        or not emb.per_level_segments
    ):
        raise CheckpointError(
            "Kaleido-BERT's release has one projection, LayerNorm and type table per "
            "level: build the model from configs/kaleido_bert/pretrain_released.yaml "
            "(model.encoder.per_level_projection and per_level_segments true)"
        )
    group = "patch embeddings"
    items = [
        _copy(emb.position_projection.kernel, "bert/position_dense", group),
    ]
    types = []
    for k, (scope, stem) in enumerate(KALEIDO_LEVELS):
        scope = f"bert/{scope}/"
        items += [
            _copy(emb.image_projections[k].kernel, f"{scope}{stem}_projector", group),
            _copy(emb.layer_norms[k].gamma, f"{scope}{stem}EmbLayerNorm/gamma", group),
            _copy(emb.layer_norms[k].beta, f"{scope}{stem}EmbLayerNorm/beta", group),
        ]
        types.append(f"{scope}{stem}_type_embeddings")

    def segment_rows(values):  # level k takes row k of its own table
        h = values[0].shape[1]
        out = np.zeros((len(values) + 1, h), values[0].dtype)
        for k, table in enumerate(values, start=1):
            if k < table.shape[0]:
                out[k] = table[k]
        return out

    items.append(
        _Item(
            emb.segment_table,
            tuple(types),
            segment_rows,
            "row k of level k's type table (k = 1..5; row 0 unused)",
            group,
            True,
        )
    )
    for head_id, head in heads.items():
        label = f"head {head_id!r}"
        if isinstance(head, LevelClassificationHead) and head_id in KALEIDO_CLASSIFIERS:
            scope, weights, bias = KALEIDO_CLASSIFIERS[head_id]
            items += [
                _transposed(head.logits.kernel, scope + weights, label),
                _copy(head.logits.bias, scope + bias, label, False),
            ]
        elif isinstance(head, MaskedPatchHead) and head_id in KALEIDO_RECONSTRUCTION:
            items.append(
                _copy(head.logits.kernel, KALEIDO_RECONSTRUCTION[head_id], label, False)
            )
    return items


def _finetune_items(heads) -> list[_Item]:
    items = []
    for head_id, head in heads.items():
        if isinstance(head, ClassificationHead) and head_id in FINETUNE_CLASSIFIERS:
            scope = FINETUNE_CLASSIFIERS[head_id]
            label = f"head {head_id!r}"
            items += [
                _copy(head.logits.kernel, f"{scope}/kernel", label, False),
                _copy(head.logits.bias, f"{scope}/bias", label, False),
            ]
    return items


@dataclasses.dataclass
class _Plan:
    assignments: list[tuple[tf.Variable, np.ndarray]]
    report: LoadReport
    release: str


def _plan(model: Any, checkpoint: str | Path) -> _Plan:
    prefix = Path(checkpoint)
    if not Path(f"{prefix}.index").is_file():
        raise CheckpointError(
            f"{prefix}.index not found: give the checkpoint prefix, e.g. "
            ".../fashionbert_pretrain_model_fin/model.ckpt-54198 or "
            ".../kaleidobert.ckpt-50683"
        )
    encoder, heads = gb._parts(model)
    reader = gb._open(prefix)
    raw = reader.get_variable_to_shape_map()
    report = LoadReport(source=str(prefix), model=model.name)
    names: dict[str, str] = {}  # stripped -> as stored
    for name in sorted(raw):
        if _is_optimizer_state(name):
            report.ignored.append(name)
        else:
            names[strip_scope(name)] = name
    shapes = {k: tuple(raw[v]) for k, v in names.items()}
    if "bert/image_embeddings/image_projector" in shapes:
        release = FASHION_BERT
    elif "bert/position_dense" in shapes:
        release = KALEIDO_BERT
    else:
        raise CheckpointError(
            f"{prefix} has neither bert/image_embeddings/ (FashionBERT) nor "
            "bert/position_dense (Kaleido-BERT): for a Google BERT checkpoint use "
            "--init-from with its directory"
        )
    bert = _bert_sizes(shapes, prefix)
    config = _read_config(prefix)
    heads_n = encoder.num_attention_heads
    if config is not None and "num_attention_heads" in config:
        if int(config["num_attention_heads"]) != heads_n:
            raise CheckpointError(
                f"{prefix.parent / 'config.json'} has num_attention_heads="
                f"{config['num_attention_heads']}, the model {heads_n}: set "
                f"model.encoder.num_attention_heads={config['num_attention_heads']}"
            )
    else:
        report.notes.append(
            f"no config.json beside the checkpoint: the model's {heads_n} attention "
            "heads are assumed (not visible in any shape)"
        )
    if bert["num_layers"] != encoder.num_layers:
        raise CheckpointError(
            f"{prefix} has {bert['num_layers']} encoder layers, the model "
            f"{encoder.num_layers}: set model.encoder.num_layers={bert['num_layers']}"
        )
    for key in ("vocab_size", "hidden_size", "inner_dim", "type_vocab_size"):
        if getattr(encoder, key) != bert[key]:
            raise CheckpointError(
                f"{prefix}: the checkpoint's {key} is {bert[key]}, the model's "
                f"{getattr(encoder, key)}: set model.encoder.{key}={bert[key]}"
            )

    items = _bert_items(encoder, heads, bert)
    items += (
        _fashion_bert_items(encoder, heads)
        if release == FASHION_BERT
        else _kaleido_items(encoder, heads)
    )
    items += _finetune_items(heads)

    groups: dict[str, list[_Item]] = {}
    for item in items:
        groups.setdefault(item.group, []).append(item)
    assignments = []
    loaded = set()
    used = set()
    for group, members in groups.items():
        present = [i for i in members if all(s in shapes for s in i.sources)]
        if not present:
            if members[0].required:
                raise CheckpointError(
                    f"{prefix} lacks {members[0].sources[0]}, which the model's "
                    f"{group} requires: the checkpoint is incomplete"
                )
            report.notes.append(
                f"the checkpoint has no {members[0].sources[0]}: the {group} stays "
                "at random init"
            )
            continue
        for item in members:
            lacking = [s for s in item.sources if s not in shapes]
            if lacking:
                raise CheckpointError(
                    f"{prefix} lacks {lacking[0]} (for model variable "
                    f"{gb._name(item.variable)}) although it has the rest of the "
                    f"{group}: the checkpoint is incomplete; copy it again"
                )
            values = [np.asarray(reader.get_tensor(names[s])) for s in item.sources]
            value = item.convert(values) if item.convert else values[0]
            target = tuple(item.variable.shape)
            if tuple(value.shape) != target:
                stored = ", ".join(f"{s} {list(shapes[s])}" for s in item.sources)
                raise CheckpointError(
                    f"checkpoint variable {stored} does not fit model variable "
                    f"{gb._name(item.variable)} {list(target)}: build the model "
                    "with the release's sizes (released_checkpoints.md)"
                )
            model_name = gb._name(item.variable)
            report.loaded[model_name] = names[item.sources[0]]
            if len(item.sources) > 1:
                report.loaded[model_name] = " + ".join(names[s] for s in item.sources)
            if item.how:
                report.transforms[model_name] = item.how
            used.update(names[s] for s in item.sources)
            loaded.add(item.variable.ref())
            assignments.append(
                (item.variable, value.astype(item.variable.dtype.as_numpy_dtype))
            )
    report.unused = sorted(n for n in names.values() if n not in used)
    report.random_init = [gb._name(v) for v in model.variables if v.ref() not in loaded]
    if release == KALEIDO_BERT:
        report.notes.append(
            "bert/position_dense was trained on the released integer locations: "
            "feed patch_boxes as import-easytransfer writes them"
        )
    report.notes.append(
        "cls/seq_relationship copied without a class swap: index 1 = match in the "
        "release and here (constants.ITM_MATCH)"
    )
    return _Plan(assignments, report, release)


def load_easytransfer_checkpoint(model: Any, checkpoint: str | Path) -> LoadReport:
    """Loads a released FashionBERT or Kaleido-BERT TF1 checkpoint, all or nothing.

    Args:
        model: A built ``VLModel`` (``kaleido_tf.build_model``) of the matching
            system: ``fashion_bert`` (any of its configs with the release's sizes)
            or ``kaleido_bert`` built from ``pretrain_released.yaml`` (one
            projection per level); or a bare ``CrossModalEncoder``.
        checkpoint: The checkpoint prefix (``.../model.ckpt-54198``,
            ``.../kaleidobert.ckpt-50683``); a ``config.json`` beside it is read
            for the head count.

    Returns:
        A LoadReport (model variable -> checkpoint variable, unused, ignored
        optimizer state, random init, notes).

    Raises:
        CheckpointError: Missing or unreadable files; neither release; sizes that
            do not fit the model (the message names the ``--set``); a required
            group (embeddings, encoder layers, patch embeddings) missing.
    """
    plan = _plan(model, checkpoint)
    for variable, value in plan.assignments:
        variable.assign(value)
    report = plan.report
    logger.info(
        "loaded %d variables of the %s release from %s; %d left at random init",
        len(report.loaded),
        plan.release,
        report.source,
        len(report.random_init),
    )
    return report


def write_run_folder(config: Any, checkpoint: str | Path, out_dir: str | Path) -> Any:
    """A run folder (as ``kaleido-tf pretrain`` writes) holding a release checkpoint.

    ``config.yaml``, ``checkpoints/ckpt-0`` (a ``tf.train.Checkpoint`` of the model)
    and ``load_report.json``: ``kaleido-tf evaluate``, ``export`` and
    ``finetune --init-from`` read it like any run of this project.

    Args:
        config: The ExperimentConfig of the model (the release's sizes).
        checkpoint: The release checkpoint prefix.
        out_dir: The run folder to create (must not hold a checkpoint yet).

    Returns:
        The LoadReport.

    Raises:
        CheckpointError: See ``load_easytransfer_checkpoint``; or ``out_dir``
            already holds checkpoints.
    """
    import yaml

    import kaleido_tf
    from kaleido_tf.atomic_files import atomic_write_text
    from kaleido_tf.config.loader import config_to_dict

    out_dir = Path(out_dir)
    if (out_dir / "checkpoints").exists():
        raise CheckpointError(
            f"{out_dir}/checkpoints exists: give a new --out folder for the run"
        )
    model = kaleido_tf.build_model(config)
    report = load_easytransfer_checkpoint(model, checkpoint)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out_dir / "config.yaml",
        yaml.safe_dump(config_to_dict(config), sort_keys=False),
    )
    atomic_write_text(out_dir / "load_report.json", report.to_json() + "\n")
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), str(out_dir / "checkpoints"), max_to_keep=1
    )
    manager.save(checkpoint_number=0)
    return report
