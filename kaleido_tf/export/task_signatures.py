"""What each downstream task's serving signature computes (DESIGN.md §7).

``TASK_SIGNATURES`` maps a task id (``kaleido-tf export --task``) to a
``TaskSignature``: which model head it needs, the named outputs it returns and what
they mean. The export builds every signature of a task from this entry alone, so a
new task is one more entry and no other change. TensorFlow is imported only when a
signature is traced, so the CLI can list the tasks at once.

``captioning`` is image-only (its signature takes the patches alone) and is bound to
the run's config at export time (``configure``): beam size, caption length and the
vocabulary's special ids are baked into the graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from kaleido_tf import constants
from kaleido_tf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class TaskSignature:
    """How one task is served.

    Attributes:
        task: The task id, also the name of its token-in signature.
        summary: One sentence for ``signatures.md`` and ``export_info.json``.
        outputs: Output name -> what it holds (dtype and shape come from the traced
            signature).
        check_model: ``check_model(model)`` raises ConfigError when the model cannot
            serve the task (e.g. it lacks the head).
        compute: ``compute(model, features, resources)`` -> output name -> tensor.
            ``features`` holds ``input_ids``, ``input_mask``, ``segment_ids`` int32
            [B, T] and ``patch_features``, ``patch_boxes``, ``patch_mask`` (all ones)
            of the patches; ``resources`` is what ``make_resources`` returned.
        make_resources: Optional; called once, before tracing, with the export's
            ``ServingVocabulary``. What it returns (tables, constants) is tracked by
            the SavedModel and given to ``compute``.
        image_only: The signature takes ``patch_features`` and ``patch_boxes``
            only (``features`` has no text keys); no text-in signature.
        configure: Optional; ``configure(config)`` returns the entry bound to a
            run's ExperimentConfig (``get_task_signature(task, config)``).
    """

    task: str
    summary: str
    outputs: Mapping[str, str]
    check_model: Callable[[Any], None]
    compute: Callable[[Any, dict[str, Any], Any], dict[str, Any]]
    make_resources: Callable[[Any], Any] | None = None
    image_only: bool = False
    configure: Callable[[Any], TaskSignature] | None = None


def classification_logits(model, head_id: str, features: dict[str, Any]) -> Any:
    """Logits of a classification head on the pooled [CLS] output, in float32.

    Runs only the encoder and that head (not the pretraining heads, which would
    need position inputs and cost time), which is what ``VLModel.call`` computes
    for a ``classification`` head.

    Args:
        model: A VLModel.
        head_id: A head of type ``classification``.
        features: The encoder's inputs (see ``TaskSignature.compute``).

    Returns:
        float32 [B, C] logits.
    """
    import tensorflow as tf

    encoded = model.encoder(features, training=False)
    logits = model.heads[head_id](encoded["pooled_output"], training=False)
    return tf.cast(logits, tf.float32)


def require_classification_head(model, head_id: str, task: str) -> None:
    """Raises ConfigError unless ``model`` is a VLModel with that classification head.

    Raises:
        ConfigError: Another model class, no such head, or a head of another type.
    """
    heads = getattr(model, "head_types", None)
    if heads is None or not hasattr(model, "encoder"):
        raise ConfigError(
            f"export --task {task}: the model is a {type(model).__name__}, not a "
            "VLModel (encoder + heads)"
        )
    if heads.get(head_id) != "classification":
        found = heads.get(head_id)
        what = f"a {found!r} head" if found else "no head"
        raise ConfigError(
            f"export --task {task}: the model has {what} {head_id!r} (its heads: "
            f"{sorted(heads)}); export a model fine-tuned with `kaleido-tf finetune "
            f"--task {task}`" + (" or a pretrained one" if task == "retrieval" else "")
        )


def _retrieval() -> TaskSignature:
    head_id = "itm"

    def compute(model, features, resources):
        import tensorflow as tf

        logits = classification_logits(model, head_id, features)  # [B, 2]
        probabilities = tf.nn.softmax(logits, axis=-1)
        return {
            "match_probability": probabilities[:, constants.ITM_MATCH],
            "match_logits": logits,
        }

    return TaskSignature(
        task="retrieval",
        summary="How well a product description matches a product image (ITM).",
        outputs={
            "match_probability": "softmax(match_logits)[:, 1]: probability that the "
            "text describes the image; rank retrieval candidates by it",
            "match_logits": "ITM head logits; index 1 = match "
            "(constants.ITM_MATCH), 0 = mismatch",
        },
        check_model=lambda model: require_classification_head(
            model, head_id, "retrieval"
        ),
        compute=compute,
    )


def _category(task: str) -> TaskSignature:
    # The fine-tuned model's classification head has the task's id.
    head_id = task
    labels = "category" if task == "category" else "subcategory"

    def compute(model, features, resources):
        import tensorflow as tf

        logits = classification_logits(model, head_id, features)  # [B, C]
        return {
            "category_probabilities": tf.nn.softmax(logits, axis=-1),
            "category_id": tf.argmax(logits, axis=-1, output_type=tf.int32),
            "category_logits": logits,
        }

    return TaskSignature(
        task=task,
        summary=f"The product's {labels} from its text and image "
        "(Kaleido-BERT §4.2, CR / SUB).",
        outputs={
            "category_probabilities": f"softmax over the C {labels} classes; class "
            f'c is entry c of the "{labels}" list in categories.json',
            "category_id": "argmax of category_probabilities",
            "category_logits": f"logits of the {head_id!r} head",
        },
        check_model=lambda model: require_classification_head(model, head_id, task),
        compute=compute,
    )


def caption_resources(vocabulary, model_vocab_size: int):
    """Built before tracing: a tracked ``tf.Module`` with ``table`` (id -> token,
    over the vocabulary asset) and ``special`` (``caption_generation.SpecialIds``:
    every bracketed token but [SEP] and the ids past the vocabulary are banned)."""
    import tensorflow as tf

    from kaleido_tf.export.text_signature import read_vocab_tokens
    from kaleido_tf.finetuning.caption_generation import SpecialIds

    tokens = read_vocab_tokens(vocabulary.vocab_file.asset_path.numpy().decode())
    sep = tokens.index(constants.SEP_TOKEN)
    banned = [i for i, t in enumerate(tokens) if _is_special(t) and i != sep]
    banned += list(range(len(tokens), model_vocab_size))
    resources = tf.Module(name="caption_vocabulary")
    resources.special = SpecialIds(
        tokens.index(constants.CLS_TOKEN),
        sep,
        tokens.index(constants.MASK_TOKEN),
        tuple(banned),
    )
    resources.table = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            vocabulary.vocab_file,
            key_dtype=tf.int64,
            key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
            value_dtype=tf.string,
            value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
        ),
        default_value="",
    )
    return resources


def _is_special(token: str) -> bool:
    return len(token) > 2 and token.startswith("[") and token.endswith("]")


def _captioning(config=None) -> TaskSignature:
    head_id = "mlm"

    def check_model(model):
        encoder = getattr(model, "encoder", None)
        heads = getattr(model, "head_types", {}) or {}
        if (
            heads.get(head_id) != "masked_lm"
            or encoder is None
            or (getattr(encoder, "attention", None) != "seq2seq")
        ):
            raise ConfigError(
                "export --task captioning: the model is not a captioner (seq2seq "
                "encoder with a masked-LM head); export a run of `kaleido-tf "
                "finetune --task captioning`"
            )
        if config is None or config.finetune is None:
            raise ConfigError("export --task captioning needs the run's config")

    def make_resources(vocabulary):
        return caption_resources(vocabulary, config.model.encoder.vocab_size)

    def compute(model, features, resources):
        import tensorflow as tf

        from kaleido_tf.finetuning.caption_generation import generate_captions

        cap = config.finetune.captioning
        ids, scores = generate_captions(
            model,
            features["patch_features"],
            features["patch_boxes"],
            resources.special,
            config.model.encoder.vocab_size,
            beam_size=cap.beam_size,
            max_tokens=cap.max_caption_tokens,
            alpha=cap.length_penalty,
        )
        keep = tf.logical_and(ids != 0, ids != resources.special.sep_id)
        pieces = tf.ragged.boolean_mask(
            resources.table.lookup(tf.cast(ids, tf.int64)), keep
        )
        text = tf.strings.reduce_join(pieces, axis=1, separator=" ")
        text = tf.strings.regex_replace(text, " ##", "")
        return {"caption_ids": ids, "caption": text, "caption_score": scores}

    return TaskSignature(
        task="captioning",
        summary="A description generated for the product image (Kaleido-BERT §4.2 "
        "FC; seq2seq decoding with beam search, K-Q19).",
        outputs={
            "caption_ids": "WordPiece ids of the caption, then [SEP], then 0",
            "caption": "the caption as text (WordPieces joined, ## glued)",
            "caption_score": "log-probability of the caption (beam score)",
        },
        check_model=check_model,
        compute=compute,
        make_resources=make_resources,
        image_only=True,
        configure=_captioning,
    )


TASK_SIGNATURES: dict[str, TaskSignature] = {
    "retrieval": _retrieval(),
    "category": _category("category"),
    "subcategory": _category("subcategory"),
    "captioning": _captioning(),
}


def get_task_signature(task: str, config=None) -> TaskSignature:
    """The entry of ``task`` (bound to ``config`` when it needs one); raises
    ConfigError listing the tasks that export."""
    try:
        entry = TASK_SIGNATURES[task]
    except KeyError:
        raise ConfigError(
            f"export has no signature for task {task!r}: exportable tasks are "
            f"{sorted(TASK_SIGNATURES)}"
        ) from None
    if entry.configure is not None and config is not None:
        return entry.configure(config)
    return entry
