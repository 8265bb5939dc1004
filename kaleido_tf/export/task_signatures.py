"""What each downstream task's serving signature computes (DESIGN.md §7).

``TASK_SIGNATURES`` maps a task id (``kaleido-tf export --task``) to a
``TaskSignature``: which model head it needs, the named outputs it returns and what
they mean. The export builds every signature of a task from this entry alone, so a
new task is one more entry and no other change. TensorFlow is imported only when a
signature is traced, so the CLI can list the tasks at once.

Adding captioning (issue #6; not implemented here): write a ``TaskSignature`` whose
``check_model`` accepts the captioner, whose ``make_resources`` builds an id -> token
table from the export's ``ServingVocabulary.vocab_file`` asset (lookup tables must be
created before tracing, so they cannot be made inside ``compute``), and whose
``compute`` decodes (beam search) and returns ``caption_ids`` int32 [B, S] and the
text ``caption`` string [B]. Then add it to ``TASK_SIGNATURES`` as ``"captioning"``.
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
    """

    task: str
    summary: str
    outputs: Mapping[str, str]
    check_model: Callable[[Any], None]
    compute: Callable[[Any, dict[str, Any], Any], dict[str, Any]]
    make_resources: Callable[[Any], Any] | None = None


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


TASK_SIGNATURES: dict[str, TaskSignature] = {
    "retrieval": _retrieval(),
    "category": _category("category"),
    "subcategory": _category("subcategory"),
}


def get_task_signature(task: str) -> TaskSignature:
    """The entry of ``task``; raises ConfigError listing the tasks that export."""
    try:
        return TASK_SIGNATURES[task]
    except KeyError:
        raise ConfigError(
            f"export has no signature for task {task!r}: exportable tasks are "
            f"{sorted(TASK_SIGNATURES)}"
        ) from None
