"""kaleido_tf: Kaleido-BERT and its fashion vision-language siblings on TF2/tf-keras.

Importing the package sets ``TF_USE_LEGACY_KERAS=1`` before TensorFlow can be
imported, so that ``tf_keras`` (Keras 2) is the Keras in use: under Keras 3 a model
wrapping tf-models-official's encoder silently trains nothing (shared/spec/STACK.md).
Nothing heavy is imported here.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


def load_config(name_or_path, overrides=()):
    """Reads an experiment config strictly (``configs/<system>/<name>.yaml`` or a path).

    Args:
        name_or_path: A YAML path, or a name such as ``kaleido_bert/pretrain``.
        overrides: ``a.b.c=value`` strings applied after the file.

    Returns:
        An ``ExperimentConfig``.
    """
    from kaleido_tf.config.experiment import ExperimentConfig
    from kaleido_tf.config.loader import load_dataclass, resolve_config_path

    path = resolve_config_path(name_or_path, "")
    return load_dataclass(ExperimentConfig, path, list(overrides))


def build_model(config):
    """The Keras model of ``config.system``, built (weights created).

    Calling it on a batch dict returns ``sequence_output``, ``pooled_output`` and one
    ``<task>_logits`` per enabled task.
    """
    from kaleido_tf.systems import get_recipe

    model = get_recipe(config).build_model(config)
    model(dummy_batch(config), training=False)
    return model


def dummy_batch(config, batch_size: int = 2, text_length: int = 8):
    """A batch of zeros with every key the model reads (for building and tracing);
    a system with its own batch structure provides ``dummy_batch`` (CommerceMM)."""
    import tensorflow as tf

    from kaleido_tf import schema
    from kaleido_tf.systems import get_recipe

    own = getattr(get_recipe(config), "dummy_batch", None)
    if own is not None:
        return own(config, batch_size, text_length)

    layout = schema.get_layout(config.model.layout)
    p, d = layout.num_patches, config.model.patch_feature_dim
    m = config.tasks.max_masked_tokens
    b, t = batch_size, text_length
    return {
        "input_ids": tf.zeros([b, t], tf.int32),
        "input_mask": tf.ones([b, t], tf.int32),
        "segment_ids": tf.zeros([b, t], tf.int32),
        "patch_features": tf.zeros([b, p, d], tf.float32),
        "patch_boxes": tf.zeros([b, p, schema.BOX_DIM], tf.float32),
        "patch_mask": tf.ones([b, p], tf.int32),
        "masked_lm_positions": tf.zeros([b, m], tf.int32),
        "g2cm_positions": tf.zeros([b, 2], tf.int32),
        "b2cm_positions": tf.zeros([b, 3], tf.int32),
        "mpm_positions": tf.zeros([b, 6], tf.int32),  # FashionBERT (F-Q5)
        "moc_positions": tf.zeros([b, 1], tf.int32),  # ImageBERT (any K builds)
        "mrfr_positions": tf.zeros([b, 1], tf.int32),
        "mrm_positions": tf.zeros([b, 1], tf.int32),  # InterBERT
    }


def load_bert_checkpoint(model, bert_dir):
    """Loads a Google BERT checkpoint directory into ``model``; returns the report.

    A checkpoint prefix of the EasyTransfer releases (``.../model.ckpt-54198``,
    ``.../kaleidobert.ckpt-50683``) is loaded by ``checkpoints/easytransfer.py``; a
    Hugging Face XLM-R folder (``config.json`` with ``model.safetensors`` or
    ``tf_model.h5``, CommerceMM's text side) by ``checkpoints/hf_xlmr.py``.
    """
    from pathlib import Path

    from kaleido_tf.checkpoints import hf_xlmr

    folder = Path(bert_dir)
    if (folder / hf_xlmr.CONFIG_FILE).is_file() and any(
        (folder / name).is_file() for name in hf_xlmr.WEIGHT_FILES
    ):
        return hf_xlmr.load_hf_xlmr(model, folder)

    if not Path(bert_dir).is_dir() and Path(f"{bert_dir}.index").is_file():
        from kaleido_tf.checkpoints.easytransfer import load_easytransfer_checkpoint

        return load_easytransfer_checkpoint(model, bert_dir)
    from kaleido_tf.checkpoints.google_bert import load_google_bert

    return load_google_bert(model, bert_dir)
