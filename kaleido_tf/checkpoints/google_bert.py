"""Google BERT TF1 checkpoints into the cross-modal encoder, by an explicit name map.

A Google BERT directory (as released by google-research/bert) holds
``bert_config.json``, ``vocab.txt`` and a TF1 name-based checkpoint
``bert_model.ckpt.{index,data-*}`` whose variables carry Google's names
(``bert/embeddings/word_embeddings``, ``bert/encoder/layer_3/attention/self/query/
kernel``, ``cls/predictions/output_bias``, ``cls/seq_relationship/output_weights``).
This module maps each of them, by a table written out below, onto the text
embeddings, the transformer blocks, the pooler, the MLM head and the ITM head of a
``VLModel`` (or onto a bare ``CrossModalEncoder``), and returns a ``LoadReport`` of
what was loaded, what was ignored and what was left at random init (STYLE §2.9,
pitfalls 3 and 4).

Conversions (as tf-models' ``tf1_bert_checkpoint_converter_lib``, prior_art §6.2):
query/key/value kernels [H, H] -> [H, N, H/N] and biases [H] -> [N, H/N]; the
attention output kernel [H, H] -> [N, H/N, H]; a position table longer than the
model's is cut to its first rows; the next-sentence classifier [2, H] is transposed
to [H, 2] with its two classes swapped, since Google's NSP index 0 means "IsNext"
and our ITM index 1 (``constants.ITM_MATCH``) means "text matches image"
(prior_art §0.6).

Reference: Devlin et al. 2019, google-research/bert ``modeling.py`` and
``run_pretraining.py`` (variable scopes); Kaleido-BERT §4.1 (initialised from BERT).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from kaleido_tf.checkpoints.report import LoadReport
from kaleido_tf.constants import ITM_MATCH, ITM_MISMATCH
from kaleido_tf.errors import CheckpointError
from kaleido_tf.heads.classification_head import ClassificationHead
from kaleido_tf.heads.masked_lm_head import MaskedLMHead
from kaleido_tf.networks.cross_modal_encoder import CrossModalEncoder
from kaleido_tf.networks.interbert_encoder import InterBertEncoder

logger = logging.getLogger(__name__)

CONFIG_FILE = "bert_config.json"
VOCAB_FILE = "vocab.txt"
CHECKPOINT_NAME = "bert_model.ckpt"
LAYOUT = f"{CONFIG_FILE}, {VOCAB_FILE} and {CHECKPOINT_NAME}.{{index,data-*}}"

# The head id initialised from Google's next-sentence classifier.
ITM_HEAD_ID = "itm"
# Google NSP classes (run_pretraining.py: label 0 = sentence B follows sentence A).
NSP_IS_NEXT = 0
NSP_NOT_NEXT = 1

# Google's bert_config.json key -> ours (EncoderConfig field, CrossModalEncoder
# argument). The only place Google's names are translated (STYLE §2.2).
CONFIG_KEYS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_attention_heads",
    "intermediate_size": "inner_dim",
    "max_position_embeddings": "max_sequence_length",
    "type_vocab_size": "type_vocab_size",
    "initializer_range": "initializer_range",
}
# Keys of Google's files that do not change what the weights mean: dropout is a
# training setting of the experiment config; the pooler_* and directionality keys
# of the multilingual/Chinese releases describe the standard pooler and vocabulary.
IGNORED_CONFIG_KEYS = frozenset(
    {
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "directionality",
        "pooler_fc_size",
        "pooler_num_attention_heads",
        "pooler_num_fc_layers",
        "pooler_size_per_head",
        "pooler_type",
    }
)

# Optimizer state in pretraining checkpoints: Google's AdamWeightDecayOptimizer
# slots, tf.compat.v1 Adam slots and accumulators, the step counter.
_OPTIMIZER_SUFFIXES = ("/adam_m", "/adam_v", "/Adam", "/Adam_1")
_OPTIMIZER_NAMES = frozenset({"global_step", "beta1_power", "beta2_power"})

# One transformer block: (ours, under the block's scope; Google's, under
# bert/encoder/layer_<i>/; Google's shape in symbols; conversion).
_BLOCK_MAP = (
    ("self_attention/query/kernel", "attention/self/query/kernel", "HH", "split_heads"),
    ("self_attention/query/bias", "attention/self/query/bias", "H", "split_heads"),
    ("self_attention/key/kernel", "attention/self/key/kernel", "HH", "split_heads"),
    ("self_attention/key/bias", "attention/self/key/bias", "H", "split_heads"),
    ("self_attention/value/kernel", "attention/self/value/kernel", "HH", "split_heads"),
    ("self_attention/value/bias", "attention/self/value/bias", "H", "split_heads"),
    (
        "self_attention/attention_output/kernel",
        "attention/output/dense/kernel",
        "HH",
        "merge_heads",
    ),
    ("self_attention/attention_output/bias", "attention/output/dense/bias", "H", ""),
    ("self_attention_layer_norm/gamma", "attention/output/LayerNorm/gamma", "H", ""),
    ("self_attention_layer_norm/beta", "attention/output/LayerNorm/beta", "H", ""),
    ("intermediate/kernel", "intermediate/dense/kernel", "HI", ""),
    ("intermediate/bias", "intermediate/dense/bias", "I", ""),
    ("output/kernel", "output/dense/kernel", "IH", ""),
    ("output/bias", "output/dense/bias", "H", ""),
    ("output_layer_norm/gamma", "output/LayerNorm/gamma", "H", ""),
    ("output_layer_norm/beta", "output/LayerNorm/beta", "H", ""),
)


def read_bert_config(path: str | Path) -> dict[str, Any]:
    """Reads and validates Google's ``bert_config.json``, in this project's names.

    Args:
        path: The JSON file, or the directory holding ``bert_config.json``.

    Returns:
        dict with ``vocab_size``, ``hidden_size``, ``num_layers``,
        ``num_attention_heads``, ``inner_dim``, ``max_sequence_length``,
        ``type_vocab_size`` (ints) and ``initializer_range`` (float): the
        ``EncoderConfig`` fields the checkpoint fixes.

    Raises:
        CheckpointError: The file is missing or not JSON, a key is missing, unknown
            or of the wrong type, ``hidden_act`` is not ``gelu``, or ``hidden_size``
            is not a multiple of ``num_attention_heads``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{path} not found: a Google BERT directory holds {LAYOUT}"
        )
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"{path} is not valid JSON ({e}): use the bert_config.json released with "
            "the checkpoint"
        ) from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} holds a {type(raw).__name__}, not a JSON object")
    known = set(CONFIG_KEYS) | IGNORED_CONFIG_KEYS | {"hidden_act"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise CheckpointError(
            f"{path} has unknown key {unknown[0]!r}: this loader reads Google BERT "
            f"configs, whose keys are {sorted(known)}"
        )
    missing = sorted(k for k in (*CONFIG_KEYS, "hidden_act") if k not in raw)
    if missing:
        raise CheckpointError(
            f"{path} lacks {', '.join(missing)}: use the bert_config.json released "
            "with the checkpoint"
        )
    if raw["hidden_act"] != "gelu":
        raise CheckpointError(
            f"{path} has hidden_act={raw['hidden_act']!r}: the encoder uses Google's "
            "tanh-approximate 'gelu' only, so this checkpoint would compute other "
            "outputs"
        )
    if raw.get("pooler_type", "first_token_transform") != "first_token_transform":
        raise CheckpointError(
            f"{path} has pooler_type={raw['pooler_type']!r}: only Google's "
            "'first_token_transform' pooler (tanh dense on [CLS]) is supported"
        )
    config: dict[str, Any] = {}
    for google, ours in CONFIG_KEYS.items():
        value = raw[google]
        if ours == "initializer_range":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and value > 0
            value = float(value) if ok else value
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        if not ok:
            kind = "a positive number" if ours == "initializer_range" else "an int >= 1"
            raise CheckpointError(f"{path}: {google} must be {kind}, got {value!r}")
        config[ours] = value
    if config["hidden_size"] % config["num_attention_heads"]:
        raise CheckpointError(
            f"{path}: hidden_size {config['hidden_size']} is not a multiple of "
            f"num_attention_heads {config['num_attention_heads']}"
        )
    return config


def bert_overrides(bert_dir: str | Path) -> list[str]:
    """``--set`` strings that make an ExperimentConfig's encoder match a checkpoint.

    Args:
        bert_dir: A Google BERT directory (or its ``bert_config.json``).

    Returns:
        e.g. ``["model.encoder.vocab_size=30522", "model.encoder.hidden_size=768",
        ...]``, for ``kaleido_tf.load_config(name, overrides)``. Dropout is left to
        the experiment config. ``max_sequence_length`` is the checkpoint's; a later
        smaller value also loads (the position table is cut).
    """
    config = read_bert_config(bert_dir)
    return [f"model.encoder.{key}={value}" for key, value in config.items()]


def count_vocab(path: str | Path) -> int:
    """Tokens in a WordPiece ``vocab.txt``: one per line, a last newline optional.

    Lines are split on ``\\n`` only; ``str.splitlines`` would also split on
    characters such as U+2028 that multilingual vocabularies contain.
    """
    data = Path(path).read_bytes()
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One row of the name map: which checkpoint value sets which model variable."""

    variable: tf.Variable
    source: str  # Google's variable name.
    shape: tuple[int, ...]  # The shape bert_config.json implies for ``source``.
    conversion: str  # "", "split_heads", "merge_heads", "first_rows", "nsp_*".
    group: str  # What a reader calls the part: "embeddings", "encoder layer 3".
    scope: str  # The checkpoint scope of the group: "bert/encoder/layer_3/".
    required: bool


def _name_map(
    encoder: CrossModalEncoder, heads: dict[str, Any], bert: dict[str, Any]
) -> list[_Entry]:
    """The explicit name map for ``encoder`` and ``heads``, in checkpoint order."""
    dims = {"H": bert["hidden_size"], "I": bert["inner_dim"]}
    v, p, t = bert["vocab_size"], bert["max_sequence_length"], bert["type_vocab_size"]
    h = dims["H"]
    emb = encoder.text_embedding

    def embeddings(variable, name, shape, conversion=""):
        scope = "bert/embeddings/"
        return _Entry(
            variable, scope + name, shape, conversion, "embeddings", scope, True
        )

    entries = [
        embeddings(emb.embedding_table, "word_embeddings", (v, h)),
        embeddings(emb.position_table, "position_embeddings", (p, h), "first_rows"),
        embeddings(emb.type_table, "token_type_embeddings", (t, h)),
        embeddings(emb.layer_norm.gamma, "LayerNorm/gamma", (h,)),
        embeddings(emb.layer_norm.beta, "LayerNorm/beta", (h,)),
    ]
    patches = encoder.patch_embedding
    if getattr(patches, "sequence_position", False):
        # ImageBERT §3.2: every visual token takes "a fixed dummy position" of
        # BERT's position table (row 0, spec §2.11 #3) and the image segment is
        # BERT's token-type row 1 (#4), so both start from BERT, as the text does.
        entries.append(
            embeddings(
                patches.sequence_position_vector,
                "position_embeddings",
                (p, h),
                "row_0",
            )
        )
        if tuple(patches.segment_table.shape) == (t, h):
            entries.append(
                embeddings(patches.segment_table, "token_type_embeddings", (t, h))
            )
    for i, block in enumerate(encoder.blocks):
        entries += _block_entries(block, i, dims, f"encoder layer {i}")
    if isinstance(encoder, InterBertEncoder):
        # InterBERT: no pooler; with extractor_init="copy_interaction" (released
        # code) text extractor layer j takes BERT layer L - t + j, i.e. BERT's top
        # t layers (7-12 of 12, for both 12 + 6 + 6 and 6 + 6 + 6).
        if encoder.extractor_init == "copy_interaction":
            first = bert["num_layers"] - len(encoder.text_blocks)
            for j, block in enumerate(encoder.text_blocks):
                entries += _block_entries(
                    block, first + j, dims, f"text extractor layer {j}"
                )
        return entries + _head_entries(heads, h, v)
    scope = "bert/pooler/"
    entries += [
        _Entry(
            encoder.pooler.kernel,
            scope + "dense/kernel",
            (h, h),
            "",
            "pooler",
            scope,
            False,
        ),
        _Entry(
            encoder.pooler.bias, scope + "dense/bias", (h,), "", "pooler", scope, False
        ),
    ]
    return entries + _head_entries(heads, h, v)


def _block_entries(
    block: tf.Module, layer: int, dims: dict[str, int], group: str
) -> list[_Entry]:
    """The name map of one transformer block, from BERT's ``layer_<layer>``."""
    own = _block_variables(block)
    scope = f"bert/encoder/layer_{layer}/"
    entries = []
    for ours, google, symbols, conversion in _BLOCK_MAP:
        if ours not in own:
            raise CheckpointError(
                f"model layer {block.name} has no variable {ours!r} (it has "
                f"{sorted(own)}): the name map expects tf-models' "
                "TransformerEncoderBlock variable names"
            )
        shape = tuple(dims[s] for s in symbols)
        entries.append(
            _Entry(own[ours], scope + google, shape, conversion, group, scope, True)
        )
    return entries


def _head_entries(heads: dict[str, Any], h: int, v: int) -> list[_Entry]:
    """The name map of the MLM heads and the ``itm`` classification head."""
    entries = []
    for head_id, head in heads.items():
        group = f"head {head_id!r}"
        if isinstance(head, MaskedLMHead):
            scope = "cls/predictions/"
            rows = (
                (head.transform.kernel, "transform/dense/kernel", (h, h), ""),
                (head.transform.bias, "transform/dense/bias", (h,), ""),
                (head.layer_norm.gamma, "transform/LayerNorm/gamma", (h,), ""),
                (head.layer_norm.beta, "transform/LayerNorm/beta", (h,), ""),
                (head.output_bias, "output_bias", (v,), ""),
            )
        elif isinstance(head, ClassificationHead) and head_id == ITM_HEAD_ID:
            scope = "cls/seq_relationship/"
            rows = (
                (head.logits.kernel, "output_weights", (2, h), "nsp_kernel"),
                (head.logits.bias, "output_bias", (2,), "nsp_bias"),
            )
        else:
            continue
        for variable, name, shape, conversion in rows:
            entries.append(
                _Entry(variable, scope + name, shape, conversion, group, scope, False)
            )
    return entries


def _block_variables(block: tf.Module) -> dict[str, tf.Variable]:
    # "kaleido_bert/encoder/layer_0/self_attention/query/kernel:0" ->
    # "self_attention/query/kernel"
    own = {}
    marker = f"/{block.name}/"
    for variable in block.variables:
        name = "/" + _name(variable)
        start = name.find(marker)
        own[name[start + len(marker) :] if start >= 0 else name[1:]] = variable
    return own


# The ITM head's class c takes Google's NSP class _NSP_FOR_ITM[c].
_NSP_FOR_ITM = [0, 0]
_NSP_FOR_ITM[ITM_MATCH] = NSP_IS_NEXT
_NSP_FOR_ITM[ITM_MISMATCH] = NSP_NOT_NEXT


def _converted_shape(
    conversion: str, shape: tuple[int, ...], target: tuple[int, ...], heads: int
) -> tuple[int, ...] | None:
    """The shape a checkpoint value of ``shape`` has once converted (None: cannot)."""
    if conversion == "split_heads":  # [H, H] -> [H, N, H/N]; [H] -> [N, H/N]
        if shape[-1] % heads:
            return None
        return (*shape[:-1], heads, shape[-1] // heads)
    if conversion == "merge_heads":  # [H, H] -> [N, H/N, H]
        if len(shape) != 2 or shape[0] % heads:
            return None
        return (heads, shape[0] // heads, shape[1])
    if conversion == "first_rows":  # [P_ckpt, H] -> [P_model, H], P_model <= P_ckpt
        if target and len(shape) == len(target) and target[0] <= shape[0]:
            return (target[0], *shape[1:])
        return shape
    if conversion == "nsp_kernel":  # [2, H] -> [H, 2]
        return shape[::-1]
    if conversion == "row_0":  # [P, H] -> [H]
        return shape[1:]
    return shape


def _convert(
    conversion: str, value: np.ndarray, target: tuple[int, ...], heads: int
) -> np.ndarray:
    """Applies a conversion of ``_converted_shape`` to a checkpoint value."""
    if conversion in ("split_heads", "merge_heads"):
        # Google's column (or row) n * H/N + d is head n, feature d: a plain reshape.
        return value.reshape(_converted_shape(conversion, value.shape, target, heads))
    if conversion == "first_rows":
        return value[: target[0]]
    if conversion == "row_0":
        return value[0]
    if conversion == "nsp_kernel":
        return value[_NSP_FOR_ITM].T  # [2, H] -> [H, 2], classes reordered
    if conversion == "nsp_bias":
        return value[_NSP_FOR_ITM]
    return value


def _describe_conversion(
    conversion: str, shape: tuple[int, ...], converted: tuple[int, ...]
) -> str:
    if conversion in ("split_heads", "merge_heads"):
        return f"reshaped {list(shape)} -> {list(converted)}"
    if conversion == "first_rows" and converted != shape:
        return f"first {converted[0]} of {shape[0]} rows"
    if conversion == "row_0":
        return "row 0 (ImageBERT's fixed visual sequence position)"
    if conversion == "nsp_kernel":
        return (
            f"transposed {list(shape)} -> {list(converted)}, classes swapped: "
            f"NSP {NSP_IS_NEXT}=IsNext -> ITM {ITM_MATCH}=match"
        )
    if conversion == "nsp_bias":
        return f"classes swapped: NSP {NSP_IS_NEXT}=IsNext -> ITM {ITM_MATCH}=match"
    return ""


def _is_optimizer_state(name: str) -> bool:
    return name in _OPTIMIZER_NAMES or name.endswith(_OPTIMIZER_SUFFIXES)


def _name(variable: tf.Variable) -> str:
    return variable.name[:-2] if variable.name.endswith(":0") else variable.name


def _parts(model: Any) -> tuple[CrossModalEncoder, dict[str, Any]]:
    """The encoder and the heads (id -> layer) of a VLModel or InterBertModel, or
    a bare CrossModalEncoder or InterBertEncoder."""
    encoders = (CrossModalEncoder, InterBertEncoder)
    if isinstance(model, encoders):
        encoder, heads = model, {}
    elif isinstance(getattr(model, "encoder", None), encoders):
        encoder, heads = model.encoder, dict(getattr(model, "heads", {}))
    else:
        raise CheckpointError(
            f"cannot load a Google BERT checkpoint into a {type(model).__name__}: "
            "give a VLModel or InterBertModel (kaleido_tf.build_model), a "
            "CrossModalEncoder or an InterBertEncoder"
        )
    if not encoder.built or not encoder.text_embedding.built:
        raise CheckpointError(
            f"model {model.name!r} has no variables yet: build it first "
            "(kaleido_tf.build_model returns a built model)"
        )
    return encoder, heads


def _locate(bert_dir: str | Path) -> tuple[Path, Path, Path]:
    """(bert_config.json, vocab.txt, checkpoint prefix) of a Google BERT directory."""
    bert_dir = Path(bert_dir)
    if not bert_dir.is_dir():
        raise CheckpointError(
            f"{bert_dir} is not a directory: give the folder holding {LAYOUT}"
        )
    prefix = bert_dir / CHECKPOINT_NAME
    for path in (
        bert_dir / CONFIG_FILE,
        bert_dir / VOCAB_FILE,
        Path(f"{prefix}.index"),
    ):
        if not path.is_file():
            raise CheckpointError(
                f"{path.name} not found in {bert_dir}: a Google BERT directory holds "
                f"{LAYOUT}"
            )
    shards = sorted(bert_dir.glob(f"{CHECKPOINT_NAME}.data-*-of-*"))
    if not shards:
        raise CheckpointError(
            f"{CHECKPOINT_NAME}.data-00000-of-00001 not found in {bert_dir}: the "
            "checkpoint's values are missing; copy every bert_model.ckpt.* file"
        )
    total = int(shards[0].name.rsplit("-of-", 1)[1])
    for k in range(total):
        shard = bert_dir / f"{CHECKPOINT_NAME}.data-{k:05d}-of-{total:05d}"
        if not shard.is_file():
            raise CheckpointError(
                f"{shard.name} not found in {bert_dir}: the checkpoint has {total} "
                "data shards; copy every bert_model.ckpt.* file"
            )
    return bert_dir / CONFIG_FILE, bert_dir / VOCAB_FILE, prefix


def _open(prefix: Path):
    try:
        return tf.train.load_checkpoint(str(prefix))
    except (tf.errors.OpError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"cannot read checkpoint {prefix} ({first}): the files may be truncated; "
            "copy them again"
        ) from None


def _num_layers(encoder: Any) -> int:
    """Blocks that load BERT's layers 1..n: all of a CrossModalEncoder, the
    interaction module of an InterBertEncoder (``model.encoder.num_layers``)."""
    return len(encoder.blocks)


def _fix(bert: dict[str, Any], encoder: CrossModalEncoder) -> str:
    """What to do when the model's sizes differ from the checkpoint's."""
    settings = [
        f"model.encoder.{key}={value}"
        for key, value in bert.items()
        if key not in ("initializer_range", "max_sequence_length")
        and (_num_layers(encoder) if key == "num_layers" else getattr(encoder, key))
        != value
    ]
    if encoder.max_sequence_length > bert["max_sequence_length"]:
        settings.append(
            f"model.encoder.max_sequence_length={bert['max_sequence_length']}"
        )
    if not settings:
        return "build the model from bert_config.json's sizes"
    return (
        f"build the model with --set {' '.join(settings)} "
        "(checkpoints.google_bert.bert_overrides lists every setting)"
    )


@dataclasses.dataclass
class _Plan:
    """Values to assign, checked in full before any variable changes."""

    assignments: list[tuple[tf.Variable, np.ndarray]]
    report: LoadReport


def _plan(model: Any, bert_dir: str | Path, read_values: bool = True) -> _Plan:
    """Reads, checks and converts everything; assigns nothing.

    With ``read_values=False`` only names and shapes are checked, and
    ``assignments`` holds no values (for ``describe_checkpoint``).
    """
    config_path, vocab_path, prefix = _locate(bert_dir)
    bert = read_bert_config(config_path)
    encoder, heads = _parts(model)
    reader = _open(prefix)
    shapes = {k: tuple(s) for k, s in reader.get_variable_to_shape_map().items()}

    tokens = count_vocab(vocab_path)
    if tokens != bert["vocab_size"]:
        raise CheckpointError(
            f"{VOCAB_FILE} has {tokens} tokens, {CONFIG_FILE} says "
            f"{bert['vocab_size']}: {vocab_path.parent} mixes files of different "
            "checkpoints; use the vocab.txt released with this one"
        )
    if tokens != encoder.vocab_size:
        raise CheckpointError(
            f"{VOCAB_FILE} has {tokens} tokens, the model's vocab_size is "
            f"{encoder.vocab_size}: {_fix(bert, encoder)}, and tokenize text with "
            f"{vocab_path}"
        )
    if bert["num_attention_heads"] != encoder.num_attention_heads:
        # Not visible in any shape: Google stores [H, H] kernels for all heads.
        raise CheckpointError(
            f"{CONFIG_FILE} has num_attention_heads={bert['num_attention_heads']}, "
            f"the model {encoder.num_attention_heads}: its [H, H] attention kernels "
            f"would be split into the wrong heads; {_fix(bert, encoder)}"
        )
    layers = _num_layers(encoder)
    # InterBERT's released 6 + 6 + 6 loads BERT layers 1-6 into the interaction
    # module and 7-12 into the text extractor (extractor_init copy_interaction).
    copies = getattr(encoder, "extractor_init", "") == "copy_interaction"
    if bert["num_layers"] != layers and not (copies and layers < bert["num_layers"]):
        raise CheckpointError(
            f"{CONFIG_FILE} has num_hidden_layers={bert['num_layers']}, the model "
            f"{layers} layers: {_fix(bert, encoder)}"
        )

    heads_n = encoder.num_attention_heads
    entries = _name_map(encoder, heads, bert)
    groups: dict[str, list[_Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.group, []).append(entry)

    report = LoadReport(source=str(prefix), model=model.name)
    assignments: list[tuple[tf.Variable, np.ndarray]] = []
    loaded: set = set()  # refs of the model variables the map sets
    for group, members in groups.items():
        present = [e for e in members if e.source in shapes]
        scope = members[0].scope
        if not present:
            if members[0].required:
                raise CheckpointError(
                    f"{prefix} has no {scope}* variables (e.g. {members[0].source}), "
                    f"which the model's {group} requires: the checkpoint is "
                    "incomplete or not a Google BERT checkpoint"
                )
            report.notes.append(
                f"the checkpoint has no {scope}* variables: the {group} stays at "
                "random init"
            )
            continue
        for entry in members:
            if entry.source not in shapes:
                raise CheckpointError(
                    f"{prefix} lacks {entry.source} (for model variable "
                    f"{_name(entry.variable)}) although it has other {scope}* "
                    "variables: the checkpoint is incomplete; copy it again"
                )
        for entry in members:
            how = _plan_entry(entry, shapes[entry.source], bert, encoder, heads_n)
            name = _name(entry.variable)
            report.loaded[name] = entry.source
            loaded.add(entry.variable.ref())
            if how:
                report.transforms[name] = how
            if not read_values:
                continue
            value = np.asarray(reader.get_tensor(entry.source))
            if not np.issubdtype(value.dtype, np.floating):
                raise CheckpointError(
                    f"{entry.source} in {prefix} has dtype {value.dtype}, not a "
                    "float: not a BERT weight"
                )
            target = tuple(entry.variable.shape)
            value = _convert(entry.conversion, value, target, heads_n)
            assignments.append(
                (entry.variable, value.astype(entry.variable.dtype.as_numpy_dtype))
            )

    used = set(report.loaded.values())
    for name in sorted(shapes):
        if _is_optimizer_state(name):
            report.ignored.append(name)
        elif name not in used:
            report.unused.append(name)
    report.random_init = [_name(v) for v in model.variables if v.ref() not in loaded]

    table = encoder.text_embedding.position_table
    if _name(table) in report.transforms:
        report.notes.append(
            f"position table cut to the model's max_sequence_length: "
            f"{report.transforms[_name(table)]} of "
            "bert/embeddings/position_embeddings"
        )
    for head_id, head in heads.items():
        if head_id == ITM_HEAD_ID and _name(head.logits.kernel) in report.loaded:
            report.notes.append(
                f"head {head_id!r} set from Google's next-sentence classifier "
                f"cls/seq_relationship with its classes swapped (NSP {NSP_IS_NEXT} = "
                f"IsNext -> ITM {ITM_MATCH} = match, constants.ITM_MATCH)"
            )
    report.notes.append(
        f"tokenize text with {vocab_path} ({tokens} WordPiece tokens; ids are its "
        "line numbers)"
    )
    return _Plan(assignments, report)


def _plan_entry(
    entry: _Entry,
    shape: tuple[int, ...],
    bert: dict[str, Any],
    encoder: CrossModalEncoder,
    heads: int,
) -> str:
    """Checks one entry's shapes; returns how its value is converted ("" = copy)."""
    if shape != entry.shape:
        raise CheckpointError(
            f"{entry.source} has shape {list(shape)} in the checkpoint but "
            f"{CONFIG_FILE} implies {list(entry.shape)}: the config belongs to "
            "another checkpoint; use the files released together"
        )
    target = tuple(entry.variable.shape)
    converted = _converted_shape(entry.conversion, shape, target, heads)
    if converted == target:
        return _describe_conversion(entry.conversion, shape, converted)
    name = _name(entry.variable)
    if entry.conversion == "first_rows":
        raise CheckpointError(
            f"model variable {name} has {target[0]} rows, checkpoint variable "
            f"{entry.source} only {shape[0]}: set model.encoder.max_sequence_length "
            f"to at most {shape[0]}"
        )
    as_ours = f" (as {list(converted)})" if converted not in (None, shape) else ""
    if entry.conversion.startswith("nsp_"):
        raise CheckpointError(
            f"checkpoint variable {entry.source} {list(shape)}{as_ours} does not fit "
            f"model variable {name} {list(target)}: head {ITM_HEAD_ID!r} must have "
            "2 classes to take Google's next-sentence classifier"
        )
    raise CheckpointError(
        f"checkpoint variable {entry.source} {list(shape)}{as_ours} does not fit "
        f"model variable {name} {list(target)}: {_fix(bert, encoder)}"
    )


def load_google_bert(model: Any, bert_dir: str | Path) -> LoadReport:
    """Loads a Google BERT checkpoint directory into a built model, all or nothing.

    Sets the text embeddings, every transformer block, the pooler, each
    ``MaskedLMHead`` (``cls/predictions``) and the ``itm`` ClassificationHead
    (``cls/seq_relationship``, classes swapped: ITM index 1 = match).
    For InterBERT (``InterBertModel`` / ``InterBertEncoder``): the text embedding,
    the interaction blocks (BERT layers 1..n; n may be below BERT's count only
    with ``extractor_init="copy_interaction"``) and the MSM head; no pooler; with
    ``copy_interaction`` the text extractor takes BERT's top t layers (released
    code: layers 7-12); the image extractor, image embedding and
    ``MatchMLPHead`` stay random. The patch
    embedding and the Kaleido heads (RR, JPS, CP, G2CM, B2CM) keep their random
    initialisation, and the report says so. Every value is read, checked and
    converted before the first variable is assigned, so on an error the model is
    unchanged.

    Args:
        model: A built ``VLModel`` or ``InterBertModel``
            (``kaleido_tf.build_model``), ``CrossModalEncoder`` or
            ``InterBertEncoder``.
        bert_dir: The directory holding ``bert_config.json``, ``vocab.txt`` and
            ``bert_model.ckpt.{index,data-*}``.

    Returns:
        A LoadReport: model variable -> checkpoint variable for everything loaded,
        the checkpoint variables not used, the optimizer state ignored, the model
        variables left at random init, and notes.

    Raises:
        CheckpointError: A file is missing or unreadable; ``vocab.txt`` does not
            have the checkpoint's or the model's vocab_size lines; the checkpoint's
            sizes do not fit the model (the message names the variable, both
            shapes and the ``--set`` to use); the embeddings or an encoder layer
            are missing from the checkpoint.
    """
    plan = _plan(model, bert_dir)
    for variable, value in plan.assignments:
        variable.assign(value)
    report = plan.report
    logger.info(
        "loaded %d variables from %s; %d left at random init; %d unused, %d "
        "optimizer-state variables ignored",
        len(report.loaded),
        report.source,
        len(report.random_init),
        len(report.unused),
        len(report.ignored),
    )
    return report


def describe_checkpoint(model_or_config: Any, bert_dir: str | Path) -> str:
    """What a checkpoint holds and where each variable would go; loads nothing.

    For ``kaleido-tf inspect checkpoint``: every checkpoint variable (optimizer
    state counted, not listed) with its shape and the model variable the name map
    gives it, then the model variables it would leave at random init and the notes.
    If the checkpoint cannot be loaded into this model, the last line says why.

    Args:
        model_or_config: A built model, or an ``ExperimentConfig`` to build one from.
        bert_dir: A Google BERT directory.

    Returns:
        Multi-line text, without a trailing newline.

    Raises:
        CheckpointError: A file is missing or the checkpoint cannot be read.
    """
    from kaleido_tf.config.experiment import ExperimentConfig

    model = model_or_config
    if isinstance(model_or_config, ExperimentConfig):
        import kaleido_tf

        model = kaleido_tf.build_model(model_or_config)
    config_path, _, prefix = _locate(bert_dir)
    bert = read_bert_config(config_path)
    shapes = {k: list(s) for k, s in _open(prefix).get_variable_to_shape_map().items()}
    try:
        plan, error = _plan(model, bert_dir, read_values=False), None
    except CheckpointError as e:
        plan, error = None, str(e)
    targets = {v: k for k, v in plan.report.loaded.items()} if plan else {}
    optimizer = [name for name in shapes if _is_optimizer_state(name)]
    sizes = ", ".join(f"{k}={v}" for k, v in bert.items())
    lines = [
        f"checkpoint {prefix}: {len(shapes)} variables, {len(optimizer)} of them "
        "optimizer state (not listed)",
        f"{CONFIG_FILE}: {sizes}",
    ]
    width = max((len(n) for n in shapes if n not in optimizer), default=0)
    for name in sorted(n for n in shapes if n not in optimizer):
        target = targets.get(name, "unused" if plan else "?")
        lines.append(f"  {name:<{width}} {str(shapes[name]):<14} -> {target}")
    if plan:
        lines.append(f"left at random init in model {model.name!r}:")
        lines += [f"  {name}" for name in plan.report.random_init] or ["  (none)"]
        lines += [f"note: {note}" for note in plan.report.notes]
    else:
        lines.append(f"does not load into model {model.name!r}: {error}")
    return "\n".join(lines)
