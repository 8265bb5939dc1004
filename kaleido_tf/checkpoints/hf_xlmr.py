"""Hugging Face XLM-R (RoBERTa) checkpoints into CommerceMM's stack, by a name map.

A Hugging Face model folder holds ``config.json`` and the weights as
``model.safetensors`` (PyTorch layout) and/or ``tf_model.h5`` (the Keras HDF5
weights that ``TFXLMRobertaModel.save_pretrained`` writes), usually with XLM-R's
``sentencepiece.bpe.model``. This module maps, by the table written out below,
the RoBERTa embeddings and the bottom L encoder layers onto ``CommerceMMEncoder``'s
``text_embedding`` and ``blocks`` (``layer_0 .. layer_{L-1}``, text encoder and
fusion encoder alike: CommerceMM §3.1 initialises both from XLM-R), and returns a
``LoadReport`` (``checkpoints/report.py``): loaded, unused, random init, notes.

Names. In safetensors (PyTorch ``state_dict`` of ``XLMRobertaModel`` or
``XLMRobertaForMaskedLM``; the ``roberta.`` prefix is optional)::

    roberta.embeddings.{word,position,token_type}_embeddings.weight
    roberta.embeddings.LayerNorm.{weight,bias}
    roberta.encoder.layer.{i}.attention.self.{query,key,value}.{weight,bias}
    roberta.encoder.layer.{i}.attention.output.dense.{weight,bias}
    roberta.encoder.layer.{i}.attention.output.LayerNorm.{weight,bias}
    roberta.encoder.layer.{i}.intermediate.dense.{weight,bias}
    roberta.encoder.layer.{i}.output.dense.{weight,bias}
    roberta.encoder.layer.{i}.output.LayerNorm.{weight,bias}
    roberta.pooler.dense.{weight,bias}, lm_head.*        (no CommerceMM target)

In ``tf_model.h5`` (Keras ``save_weights`` HDF5: root attribute ``layer_names``,
e.g. ``[b"roberta"]`` or ``[b"roberta", b"lm_head"]``; each layer group's
attribute ``weight_names`` lists datasets such as
``tf_xlm_roberta_model/roberta/encoder/layer_._0/attention/self/query/kernel:0``).
As Hugging Face's own ``load_tf_weights`` does, the first component (the model
class's scope) is dropped, so ``roberta/embeddings/word_embeddings/weight``,
``roberta/embeddings/{position,token_type}_embeddings/embeddings``,
``.../LayerNorm/{gamma,beta}``, ``roberta/encoder/layer_._{i}/...
/{kernel,bias}`` (the PyTorch names with ``/``, ``layer_._{i}`` and
``kernel``/``gamma``/``beta``) are matched.

Conversions: a PyTorch ``Linear`` weight is [out, in] and is transposed; an h5
Dense kernel is already [in, out]. Then, as ``google_bert.py``: query/key/value
kernels [H, H] -> [H, N, H/N] and biases [H] -> [N, H/N]; the attention output
kernel [H, H] -> [N, H/N, H]. Positions: RoBERTa numbers real tokens from
``pad_token_id + 1`` = 2 (fairseq ``make_positions``; rows 0 and 1 are never used
by a token of a right-padded text), while ``TextEmbedding`` uses rows 0..T-1, so
our row j is checkpoint row j + 2, and 514 rows give ``max_sequence_length`` 512.
Padding tokens take row 1 in RoBERTa and row j + 2 here; they are masked out of
attention, so the outputs at real tokens agree for right-padded texts.

A checkpoint with more layers than the model loads its bottom L layers and says so
(spec §4.11 #16: XLM-R-base truncated for the 6-layer models).

Reference: CommerceMM §3.1 ("initialized from XLM-R"); Conneau et al. 2020;
Hugging Face ``modeling_roberta.py`` / ``modeling_tf_roberta.py`` (names);
spec imagebert_interbert_commercemm.md §4.3, §4.11 #16.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from kaleido_tf.checkpoints import safetensors_file
from kaleido_tf.checkpoints.report import LoadReport
from kaleido_tf.errors import CheckpointError, DataError
from kaleido_tf.networks.commerce_mm_encoder import CommerceMMEncoder

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
H5_FILE = "tf_model.h5"
SENTENCEPIECE_FILE = "sentencepiece.bpe.model"
WEIGHT_FILES = (SAFETENSORS_FILE, H5_FILE)  # tried in this order
LAYOUT = f"{CONFIG_FILE} and {SAFETENSORS_FILE} or {H5_FILE}"
MODEL_TYPES = ("xlm-roberta", "roberta")

# Hugging Face config.json key -> ours (CommerceMMEncoder argument).
CONFIG_KEYS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_attention_heads",
    "intermediate_size": "inner_dim",
    "max_position_embeddings": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size",
    "initializer_range": "initializer_range",
    "layer_norm_eps": "norm_epsilon",
}

# One block: (ours under the block's scope; PyTorch name under encoder.layer.{i}.;
# its shape in symbols; whether it is a Linear weight ([out, in] in PyTorch);
# the head conversion after orienting it [in, out]).
_BLOCK_MAP = (
    ("self_attention/query/kernel", "attention.self.query.weight", "HH", True, "split"),
    ("self_attention/query/bias", "attention.self.query.bias", "H", False, "split"),
    ("self_attention/key/kernel", "attention.self.key.weight", "HH", True, "split"),
    ("self_attention/key/bias", "attention.self.key.bias", "H", False, "split"),
    ("self_attention/value/kernel", "attention.self.value.weight", "HH", True, "split"),
    ("self_attention/value/bias", "attention.self.value.bias", "H", False, "split"),
    (
        "self_attention/attention_output/kernel",
        "attention.output.dense.weight",
        "HH",
        True,
        "merge",
    ),
    (
        "self_attention/attention_output/bias",
        "attention.output.dense.bias",
        "H",
        False,
        "",
    ),
    (
        "self_attention_layer_norm/gamma",
        "attention.output.LayerNorm.weight",
        "H",
        False,
        "",
    ),
    (
        "self_attention_layer_norm/beta",
        "attention.output.LayerNorm.bias",
        "H",
        False,
        "",
    ),
    ("intermediate/kernel", "intermediate.dense.weight", "IH", True, ""),
    ("intermediate/bias", "intermediate.dense.bias", "I", False, ""),
    ("output/kernel", "output.dense.weight", "HI", True, ""),
    ("output/bias", "output.dense.bias", "H", False, ""),
    ("output_layer_norm/gamma", "output.LayerNorm.weight", "H", False, ""),
    ("output_layer_norm/beta", "output.LayerNorm.bias", "H", False, ""),
)


def read_xlmr_config(path: str | Path) -> dict[str, Any]:
    """Reads and checks a Hugging Face XLM-R / RoBERTa ``config.json``.

    Keys that do not change what the weights compute (dropout, ``architectures``,
    ``torch_dtype``, token ids other than ``pad_token_id``, ...) are not read.

    Args:
        path: The JSON file, or the folder holding ``config.json``.

    Returns:
        dict in this project's names: ``vocab_size``, ``hidden_size``,
        ``num_layers``, ``num_attention_heads``, ``inner_dim``,
        ``type_vocab_size``, ``max_position_embeddings`` (the checkpoint's
        position rows), ``max_sequence_length`` (the tokens those rows serve:
        ``max_position_embeddings - pad_token_id - 1``, 512 for XLM-R),
        ``pad_token_id`` (ints), ``initializer_range`` and ``norm_epsilon``
        (floats). The ``CommerceMMEncoder`` arguments among them build a model
        this checkpoint fits.

    Raises:
        CheckpointError: The file is missing or not JSON; a key is missing or of
            the wrong type; ``model_type`` is not XLM-R/RoBERTa; ``hidden_act`` is
            not the exact ``gelu``; position embeddings are not absolute;
            ``hidden_size`` is not a multiple of ``num_attention_heads``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{path} not found: a Hugging Face XLM-R folder holds {LAYOUT}"
        )
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"{path} is not valid JSON ({e}): use the config.json released with the "
            "weights"
        ) from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} holds a {type(raw).__name__}, not a JSON object")
    model_type = raw.get("model_type")
    if model_type not in MODEL_TYPES:
        raise CheckpointError(
            f"{path} has model_type={model_type!r}: this loader reads "
            f"{' or '.join(MODEL_TYPES)} checkpoints (RoBERTa architecture)"
        )
    missing = sorted(k for k in (*CONFIG_KEYS, "hidden_act") if k not in raw)
    if missing:
        raise CheckpointError(
            f"{path} lacks {', '.join(missing)}: use the config.json released with "
            "the weights"
        )
    if raw["hidden_act"] != "gelu":
        raise CheckpointError(
            f"{path} has hidden_act={raw['hidden_act']!r}: CommerceMM's blocks use "
            "the exact (erf) 'gelu' of XLM-R only, so this checkpoint would compute "
            "other outputs"
        )
    position_type = raw.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise CheckpointError(
            f"{path} has position_embedding_type={position_type!r}: only absolute "
            "position embeddings (XLM-R's) are supported"
        )
    config: dict[str, Any] = {}
    for hf, ours in CONFIG_KEYS.items():
        value = raw[hf]
        if ours in ("initializer_range", "norm_epsilon"):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and value > 0
            value = float(value) if ok else value
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        if not ok:
            floats = ("initializer_range", "norm_epsilon")
            kind = "a positive number" if ours in floats else "an int >= 1"
            raise CheckpointError(f"{path}: {hf} must be {kind}, got {value!r}")
        config[ours] = value
    pad = raw.get("pad_token_id", 1)
    if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
        raise CheckpointError(f"{path}: pad_token_id must be an int >= 0, got {pad!r}")
    config["pad_token_id"] = pad
    config["max_sequence_length"] = config["max_position_embeddings"] - pad - 1
    if config["max_sequence_length"] < 1:
        raise CheckpointError(
            f"{path}: max_position_embeddings {config['max_position_embeddings']} "
            f"leaves no position for tokens after RoBERTa's offset {pad + 1}"
        )
    if config["hidden_size"] % config["num_attention_heads"]:
        raise CheckpointError(
            f"{path}: hidden_size {config['hidden_size']} is not a multiple of "
            f"num_attention_heads {config['num_attention_heads']}"
        )
    return config


def encoder_kwargs(config: dict[str, Any], num_layers: int | None = None) -> dict:
    """``CommerceMMEncoder`` keyword arguments that fit a checkpoint's config.

    Args:
        config: ``read_xlmr_config``'s result.
        num_layers: L of the model, at most the checkpoint's (default: all of
            them); fewer layers load the bottom L (spec §4.11 #16).

    Returns:
        ``vocab_size``, ``hidden_size``, ``num_layers``, ``num_attention_heads``,
        ``inner_dim``, ``max_sequence_length``, ``type_vocab_size``,
        ``initializer_range``, ``norm_epsilon``; the caller adds
        ``num_text_layers`` and ``image_encoder``.
    """
    keys = (
        "vocab_size",
        "hidden_size",
        "num_attention_heads",
        "inner_dim",
        "max_sequence_length",
        "type_vocab_size",
        "initializer_range",
        "norm_epsilon",
    )
    kwargs = {key: config[key] for key in keys}
    kwargs["num_layers"] = config["num_layers"] if num_layers is None else num_layers
    return kwargs


# ---------------------------------------------------------------------------
# Weight files: name -> shape, and values on demand.


@dataclasses.dataclass
class _Weights:
    """The tensors of one weight file under canonical (PyTorch, unprefixed) names."""

    path: Path
    fmt: str  # "safetensors" or "h5"
    shapes: dict[str, tuple[int, ...]]  # file name -> shape
    dtypes: dict[str, str]  # file name -> dtype name
    canonical: dict[str, str]  # canonical name -> file name
    _read: Any = None  # file name -> np.ndarray

    def read(self, name: str) -> np.ndarray:
        return self._read(name)


def _canonical_torch(name: str) -> str | None:
    """``roberta.encoder.layer.0...weight`` -> ``encoder.layer.0...weight``."""
    stripped = name[len("roberta.") :] if name.startswith("roberta.") else name
    if stripped.startswith(("embeddings.", "encoder.", "pooler.")):
        return stripped
    return None


_TF_LEAVES = {
    "kernel": "weight",
    "gamma": "weight",
    "beta": "bias",
    "bias": "bias",
    "weight": "weight",  # word_embeddings/weight
    "embeddings": "weight",  # position / token_type Embedding layers
}


def _canonical_tf(name: str) -> str | None:
    """``roberta/encoder/layer_._0/attention/self/query/kernel:0`` -> PyTorch name."""
    if name.endswith(":0"):
        name = name[:-2]
    if not name.startswith("roberta/"):
        return None
    parts = name[len("roberta/") :].split("/")
    if len(parts) < 2 or parts[-1] not in _TF_LEAVES:
        return None
    parts = [p.replace("layer_._", "layer.") for p in parts[:-1]]
    return ".".join(parts) + "." + _TF_LEAVES[name.rsplit("/", 1)[-1]]


def _open_safetensors(path: Path) -> _Weights:
    tensors, _ = safetensors_file.read_header(path)
    canonical = {}
    for name in tensors:
        key = _canonical_torch(name)
        if key is not None:
            canonical.setdefault(key, name)
    return _Weights(
        path,
        "safetensors",
        {k: v.shape for k, v in tensors.items()},
        {k: v.dtype for k, v in tensors.items()},
        canonical,
        lambda name: safetensors_file.read_tensor(path, tensors[name]),
    )


def _open_h5(path: Path) -> _Weights:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(
            f"cannot read {path} as HDF5 ({e}): the file may be truncated; copy it "
            "again"
        ) from None
    with f:
        if "layer_names" not in f.attrs:
            raise CheckpointError(
                f"{path} has no 'layer_names' attribute: not the Keras weights file "
                "that Hugging Face's save_pretrained writes (tf_model.h5)"
            )
        datasets: dict[str, str] = {}  # reported name -> path in the file
        shapes, dtypes, canonical = {}, {}, {}
        for layer in f.attrs["layer_names"]:
            layer = layer.decode("utf-8") if isinstance(layer, bytes) else str(layer)
            group = f[layer]
            for weight in group.attrs.get("weight_names", []):
                weight = weight.decode("utf-8") if isinstance(weight, bytes) else weight
                if weight not in group or not isinstance(group[weight], h5py.Dataset):
                    raise CheckpointError(
                        f"{path}: layer {layer!r} lists weight {weight!r} that the "
                        "file lacks: the file is incomplete; copy it again"
                    )
                dataset = group[weight]
                datasets[weight] = f"{layer}/{weight}"
                shapes[weight] = tuple(dataset.shape)
                dtypes[weight] = str(dataset.dtype)
                # Hugging Face's load_tf_weights drops the model-class scope.
                key = _canonical_tf("/".join(weight.split("/")[1:]))
                if key is not None:
                    canonical.setdefault(key, weight)

    def read(name):
        with h5py.File(path, "r") as h5:
            return np.asarray(h5[datasets[name]])

    return _Weights(path, "h5", shapes, dtypes, canonical, read)


def _locate(folder: str | Path, weights: str | None) -> tuple[Path, Path]:
    """(config.json, weight file) of a Hugging Face folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder} is not a directory: give the folder holding {LAYOUT}"
        )
    config = folder / CONFIG_FILE
    if not config.is_file():
        raise CheckpointError(
            f"{CONFIG_FILE} not found in {folder}: a Hugging Face XLM-R folder holds "
            f"{LAYOUT}"
        )
    names = (weights,) if weights else WEIGHT_FILES
    for name in names:
        if (folder / name).is_file():
            return config, folder / name
    if weights:
        raise CheckpointError(f"{weights} not found in {folder}")
    raise CheckpointError(
        f"neither {SAFETENSORS_FILE} nor {H5_FILE} found in {folder}: download the "
        "weights (PyTorch-only pytorch_model.bin is not read; convert it to "
        "safetensors)"
    )


def _open(path: Path) -> _Weights:
    if path.suffix == ".h5":
        return _open_h5(path)
    if path.suffix == ".safetensors":
        return _open_safetensors(path)
    raise CheckpointError(
        f"{path.name}: unknown weight format; give a .safetensors or .h5 file"
    )


# ---------------------------------------------------------------------------
# The name map.


@dataclasses.dataclass(frozen=True)
class _Entry:
    variable: tf.Variable
    canonical: str  # PyTorch name without the roberta. prefix
    shape: tuple[int, ...]  # shape in the checkpoint's orientation (see fmt)
    linear: bool  # a Linear weight: [out, in] in PyTorch, [in, out] in h5
    conversion: str  # "", "split", "merge", "positions"
    group: str


def _name(variable: tf.Variable) -> str:
    return variable.name[:-2] if variable.name.endswith(":0") else variable.name


def _block_variables(block: tf.Module) -> dict[str, tf.Variable]:
    own = {}
    marker = f"/{block.name}/"
    for variable in block.variables:
        name = "/" + _name(variable)
        start = name.find(marker)
        own[name[start + len(marker) :] if start >= 0 else name[1:]] = variable
    return own


def _name_map(encoder: CommerceMMEncoder, config: dict[str, Any]) -> list[_Entry]:
    """Entries in the PyTorch orientation ([out, in] for Linear weights)."""
    dims = {"H": config["hidden_size"], "I": config["inner_dim"]}
    h = dims["H"]
    v, p, t = (
        config["vocab_size"],
        config["max_position_embeddings"],
        config["type_vocab_size"],
    )
    emb = encoder.text_embedding
    group = "embeddings"
    entries = [
        _Entry(
            emb.embedding_table,
            "embeddings.word_embeddings.weight",
            (v, h),
            False,
            "",
            group,
        ),
        _Entry(
            emb.position_table,
            "embeddings.position_embeddings.weight",
            (p, h),
            False,
            "positions",
            group,
        ),
        _Entry(
            emb.type_table,
            "embeddings.token_type_embeddings.weight",
            (t, h),
            False,
            "",
            group,
        ),
        _Entry(
            emb.layer_norm.gamma, "embeddings.LayerNorm.weight", (h,), False, "", group
        ),
        _Entry(
            emb.layer_norm.beta, "embeddings.LayerNorm.bias", (h,), False, "", group
        ),
    ]
    for i, block in enumerate(encoder.blocks):
        own = _block_variables(block)
        for ours, torch_name, symbols, linear, conversion in _BLOCK_MAP:
            if ours not in own:
                raise CheckpointError(
                    f"model layer {block.name} has no variable {ours!r} (it has "
                    f"{sorted(own)}): the name map expects tf-models' "
                    "TransformerEncoderBlock variable names"
                )
            shape = tuple(dims[s] for s in symbols)
            entries.append(
                _Entry(
                    own[ours],
                    f"encoder.layer.{i}.{torch_name}",
                    shape,
                    linear,
                    conversion,
                    f"encoder layer {i}",
                )
            )
    return entries


def _encoder(model: Any) -> CommerceMMEncoder:
    """The CommerceMMEncoder of ``model`` (sizes only; not necessarily built)."""
    if isinstance(model, CommerceMMEncoder):
        encoder = model
    elif isinstance(getattr(model, "encoder", None), CommerceMMEncoder):
        encoder = model.encoder
    else:
        raise CheckpointError(
            f"cannot load an XLM-R checkpoint into a {type(model).__name__}: give a "
            "CommerceMMEncoder or a model whose .encoder is one"
        )
    return encoder


def _check_built(model: Any, encoder: CommerceMMEncoder) -> None:
    if not encoder.text_embedding.built or not all(b.built for b in encoder.blocks):
        raise CheckpointError(
            f"model {model.name!r} has no text variables yet: build it first (call "
            "it once, or call encode_text(embed_text(ids), mask, num_layers))"
        )


def _fix(config: dict[str, Any], encoder: CommerceMMEncoder) -> str:
    """The CommerceMMEncoder arguments to change so the checkpoint fits."""
    wanted = encoder_kwargs(config, min(encoder.num_layers, config["num_layers"]))
    changes = [
        f"{key}={value}"
        for key, value in wanted.items()
        if key not in ("initializer_range", "norm_epsilon", "max_sequence_length")
        and getattr(encoder, key) != value
    ]
    if encoder.max_sequence_length > config["max_sequence_length"]:
        changes.append(f"max_sequence_length<={config['max_sequence_length']}")
    if not changes:
        return "build the encoder from config.json (hf_xlmr.encoder_kwargs)"
    return (
        f"build CommerceMMEncoder with {', '.join(changes)} "
        "(hf_xlmr.encoder_kwargs gives every argument)"
    )


def _check_sizes(
    config: dict[str, Any], encoder: CommerceMMEncoder, config_path: Path
) -> None:
    where = config_path.name
    for ours, hf in (
        ("vocab_size", "vocab_size"),
        ("hidden_size", "hidden_size"),
        ("num_attention_heads", "num_attention_heads"),
        ("inner_dim", "intermediate_size"),
        ("type_vocab_size", "type_vocab_size"),
    ):
        if config[ours] != getattr(encoder, ours):
            raise CheckpointError(
                f"{where} has {hf}={config[ours]}, the model's {ours} is "
                f"{getattr(encoder, ours)}: {_fix(config, encoder)}"
            )
    if config["num_layers"] < encoder.num_layers:
        raise CheckpointError(
            f"{where} has num_hidden_layers={config['num_layers']}, fewer than the "
            f"model's {encoder.num_layers} layers: build CommerceMMEncoder with "
            f"num_layers <= {config['num_layers']}"
        )
    if encoder.max_sequence_length > config["max_sequence_length"]:
        raise CheckpointError(
            f"the model's max_sequence_length {encoder.max_sequence_length} exceeds "
            f"the {config['max_sequence_length']} token positions of {where} "
            f"(max_position_embeddings {config['max_position_embeddings']} minus "
            f"RoBERTa's offset {config['pad_token_id'] + 1}): build CommerceMMEncoder "
            f"with max_sequence_length <= {config['max_sequence_length']}"
        )
    activation = tf_keras.activations.serialize(encoder.inner_activation)
    if activation != "gelu":
        raise CheckpointError(
            f"the model's inner_activation is {activation!r}, XLM-R's hidden_act is "
            "the exact (erf) 'gelu': build CommerceMMEncoder with "
            "inner_activation='gelu'"
        )


def _oriented_shape(entry: _Entry, fmt: str) -> tuple[int, ...]:
    """The shape the checkpoint stores for ``entry`` in format ``fmt``."""
    if entry.linear and fmt == "h5":
        return entry.shape[::-1]  # Keras Dense kernel [in, out]
    return entry.shape


def _convert(
    entry: _Entry, value: np.ndarray, fmt: str, heads: int, pad_id: int
) -> tuple[np.ndarray, str]:
    """The checkpoint value in the model variable's layout, and how it changed."""
    how = []
    if entry.linear and fmt == "safetensors":
        value = value.T  # PyTorch Linear [out, in] -> [in, out]
        how.append(f"transposed {list(value.shape[::-1])} -> {list(value.shape)}")
    if entry.conversion == "split":  # [H, H] -> [H, N, H/N]; [H] -> [N, H/N]
        shape = value.shape
        value = value.reshape(*shape[:-1], heads, shape[-1] // heads)
        how.append(f"reshaped {list(shape)} -> {list(value.shape)}")
    elif entry.conversion == "merge":  # [H, H] -> [N, H/N, H]
        shape = value.shape
        value = value.reshape(heads, shape[0] // heads, shape[1])
        how.append(f"reshaped {list(shape)} -> {list(value.shape)}")
    elif entry.conversion == "positions":  # RoBERTa rows pad+1 .. pad+P
        rows = int(entry.variable.shape[0])
        first = pad_id + 1
        value = value[first : first + rows]
        how.append(
            f"rows {first}..{first + rows - 1} of {entry.shape[0]} (RoBERTa positions "
            f"start at pad_token_id + 1 = {first})"
        )
    return np.ascontiguousarray(value), "; ".join(how)


@dataclasses.dataclass
class _Plan:
    assignments: list[tuple[tf.Variable, np.ndarray]]
    report: LoadReport


def _plan(model: Any, folder: str | Path, weights: str | None) -> _Plan:
    config_path, weights_path = _locate(folder, weights)
    config = read_xlmr_config(config_path)
    encoder = _encoder(model)
    _check_sizes(config, encoder, config_path)
    _check_built(model, encoder)
    tokenizer_note = _check_tokenizer(Path(folder), config, encoder)
    ckpt = _open(weights_path)
    heads = encoder.num_attention_heads
    report = LoadReport(source=str(weights_path), model=model.name)
    assignments: list[tuple[tf.Variable, np.ndarray]] = []
    loaded = set()
    converted_dtypes = set()
    for entry in _name_map(encoder, config):
        name = ckpt.canonical.get(entry.canonical)
        if name is None:
            raise CheckpointError(
                f"{weights_path.name} lacks {entry.canonical} (for model variable "
                f"{_name(entry.variable)}, the {entry.group}): the file is "
                "incomplete or not an XLM-R/RoBERTa checkpoint"
            )
        expected = _oriented_shape(entry, ckpt.fmt)
        if ckpt.shapes[name] != expected:
            raise CheckpointError(
                f"{name} has shape {list(ckpt.shapes[name])} in {weights_path.name} "
                f"but {CONFIG_FILE} implies {list(expected)}: the config belongs to "
                "another checkpoint; use the files released together"
            )
        value = ckpt.read(name)
        if not np.issubdtype(value.dtype, np.floating):
            raise CheckpointError(
                f"{name} in {weights_path.name} has dtype {value.dtype}, not a float: "
                "not a model weight"
            )
        if value.dtype != np.float32 or ckpt.dtypes[name] == "BF16":
            converted_dtypes.add(ckpt.dtypes[name])
        value, how = _convert(entry, value, ckpt.fmt, heads, config["pad_token_id"])
        target = tuple(entry.variable.shape)
        if value.shape != target:  # cannot happen once the sizes are checked
            raise CheckpointError(
                f"{name} converts to {list(value.shape)}, model variable "
                f"{_name(entry.variable)} is {list(target)}: {_fix(config, encoder)}"
            )
        var_name = _name(entry.variable)
        report.loaded[var_name] = name
        if how:
            report.transforms[var_name] = how
        loaded.add(entry.variable.ref())
        assignments.append(
            (entry.variable, value.astype(entry.variable.dtype.as_numpy_dtype))
        )

    used = set(report.loaded.values())
    for name in sorted(ckpt.shapes):
        if name in used:
            continue
        if not _is_float(ckpt.dtypes[name]):
            report.ignored.append(name)  # buffers such as position_ids
        else:
            report.unused.append(name)
    report.random_init = [_name(v) for v in model.variables if v.ref() not in loaded]
    if report.ignored:
        report.notes.append(
            f"{len(report.ignored)} integer buffers ignored (not weights): "
            f"{', '.join(report.ignored)}"
        )

    report.notes.append(
        f"position table = rows {config['pad_token_id'] + 1}.."
        f"{config['pad_token_id'] + encoder.max_sequence_length} of the checkpoint's "
        f"{config['max_position_embeddings']} (RoBERTa numbers tokens from "
        "pad_token_id + 1); outputs at real tokens match for right-padded text"
    )
    if config["num_layers"] > encoder.num_layers:
        report.notes.append(
            f"checkpoint has {config['num_layers']} layers, the model "
            f"{encoder.num_layers}: loaded the bottom {encoder.num_layers} (layers "
            f"0..{encoder.num_layers - 1}); layers {encoder.num_layers}.."
            f"{config['num_layers'] - 1} unused (spec §4.11 #16, truncated XLM-R)"
        )
    report.notes.append(
        f"K = num_text_layers = {encoder.num_text_layers}: the loaded layers below K "
        "form the text encoder, the others the fusion encoder (CommerceMM §3.1: "
        "both inherit XLM-R's layers)"
    )
    if any("pooler" in n for n in report.unused):
        report.notes.append(
            "pooler unused: CommerceMM's heads read the [CLS] state directly"
        )
    if any("lm_head" in n for n in report.unused):
        report.notes.append("lm_head unused: the MLM head keeps its own initialisation")
    if converted_dtypes:
        report.notes.append(
            f"values stored as {', '.join(sorted(converted_dtypes))} were widened "
            "to float32"
        )
    emb_eps = float(encoder.text_embedding.layer_norm.epsilon)
    if not np.isclose(emb_eps, config["norm_epsilon"], rtol=1e-6, atol=0.0):
        report.notes.append(
            f"the embedding LayerNorm epsilon is {emb_eps:g}, XLM-R's layer_norm_eps "
            f"{config['norm_epsilon']:g}: outputs differ slightly from XLM-R's; "
            "build TextEmbedding with norm_epsilon=layer_norm_eps"
        )
    block_eps = float(encoder.norm_epsilon)
    if not np.isclose(block_eps, config["norm_epsilon"], rtol=1e-6, atol=0.0):
        report.notes.append(
            f"the blocks' LayerNorm epsilon is {block_eps:g}, XLM-R's layer_norm_eps "
            f"{config['norm_epsilon']:g}: build CommerceMMEncoder with "
            f"norm_epsilon={config['norm_epsilon']:g}"
        )
    report.notes.append(tokenizer_note)
    return _Plan(assignments, report)


def _is_float(dtype: str) -> bool:
    return dtype in ("F64", "F32", "F16", "BF16") or dtype.startswith(
        ("float", "bfloat")
    )


def _check_tokenizer(
    folder: Path, config: dict[str, Any], encoder: CommerceMMEncoder
) -> str:
    """Checks ``sentencepiece.bpe.model`` against the vocabulary; returns a note."""
    path = folder / SENTENCEPIECE_FILE
    if not path.is_file():
        return (
            f"no {SENTENCEPIECE_FILE} in {folder}: tokenize text with the "
            f"SentencePiece model of this checkpoint ({config['vocab_size']} ids)"
        )
    from kaleido_tf.text.sentencepiece_tokenizer import SentencePieceTokenizer

    try:
        tokenizer = SentencePieceTokenizer(path, 2)
    except DataError as e:
        raise CheckpointError(str(e)) from None
    if tokenizer.vocab_size != config["vocab_size"]:
        raise CheckpointError(
            f"{SENTENCEPIECE_FILE} has {tokenizer.num_pieces} pieces, i.e. "
            f"{tokenizer.vocab_size} XLM-R ids, {CONFIG_FILE} says vocab_size "
            f"{config['vocab_size']}: {folder} mixes files of different checkpoints"
        )
    return (
        f"tokenize text with {path} ({tokenizer.num_pieces} pieces + <s>, <pad>, "
        f"</s>, <unk> layout, <mask> = {tokenizer.mask_id}; "
        "kaleido_tf.text.sentencepiece_tokenizer)"
    )


def load_hf_xlmr(
    model: Any, folder: str | Path, weights: str | None = None
) -> LoadReport:
    """Loads a Hugging Face XLM-R checkpoint into CommerceMM's text side, atomically.

    Sets ``text_embedding`` (word, position, token-type tables, LayerNorm) and the
    L blocks from the checkpoint's bottom L layers. Everything is read, checked
    and converted before the first variable is assigned, so on an error the
    model is unchanged. The image encoder and the heads keep their
    initialisation, and the report lists them under ``random_init``.

    Args:
        model: A ``CommerceMMEncoder`` (or a model whose ``.encoder`` is one) whose
            text embedding and blocks are built.
        folder: The Hugging Face folder: ``config.json`` and ``model.safetensors``
            or ``tf_model.h5`` (optionally ``sentencepiece.bpe.model``, checked
            against ``vocab_size``).
        weights: The weight file's name in ``folder``; default: the first of
            ``model.safetensors``, ``tf_model.h5`` that exists.

    Returns:
        A LoadReport: model variable -> checkpoint tensor for everything loaded,
        how each value was changed (transposes, head splits, position rows), the
        checkpoint tensors not used (pooler, lm_head, layers above L), integer
        buffers ignored, the model variables left at random init, and notes
        (position offset, truncation, epsilon mismatches, tokenizer).

    Raises:
        CheckpointError: A file is missing or unreadable; ``config.json`` is not
            an XLM-R/RoBERTa config; its vocab, hidden, heads, intermediate or
            type sizes differ from the model's, it has fewer layers, or fewer
            positions than ``max_sequence_length``; a tensor is missing or has the
            wrong shape; ``sentencepiece.bpe.model`` disagrees with ``vocab_size``.
    """
    plan = _plan(model, folder, weights)
    for variable, value in plan.assignments:
        variable.assign(value)
    report = plan.report
    logger.info(
        "loaded %d variables from %s; %d left at random init; %d unused",
        len(report.loaded),
        report.source,
        len(report.random_init),
        len(report.unused),
    )
    return report
