"""The ``tf.Module`` a SavedModel export saves: the model and its serving signatures.

Signatures (DESIGN.md §7), for a task id ``<task>`` of ``TASK_SIGNATURES``:

- ``<task>`` and ``serving_default``: ``input_ids``, ``input_mask`` int32 [B, T],
  ``patch_features`` float32 [B, P, D], ``patch_boxes`` float32 [B, P, 5] -> the
  task's named outputs. B and T are dynamic (each request may use its own text
  length: FashionBERT's variable sequence length), P and D are the model's.
- With the text signature: ``<task>_text`` takes ``description`` string [B] instead
  of ``input_ids`` and ``input_mask`` and tokenises in the graph; ``tokenize`` maps
  ``description`` to ``input_ids`` and ``input_mask``.

``segment_ids`` (zeros: product text is segment 0) and ``patch_mask`` (ones: every
patch of a prepared image is real) are built inside. Inputs whose batch sizes or
text shapes disagree, or whose T exceeds the encoder's position table, fail with an
``InvalidArgumentError`` that names the input.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from kaleido_tf import schema
from kaleido_tf.errors import ConfigError
from kaleido_tf.export.task_signatures import TaskSignature
from kaleido_tf.export.text_signature import ServingVocabulary

TOKENIZE_SIGNATURE = "tokenize"
TEXT_SIGNATURE_SUFFIX = "_text"

# Input name -> meaning, for export_info.json and signatures.md.
INPUT_DOCS = {
    "input_ids": "WordPiece ids `[CLS] text [SEP]`, then 0 ([PAD]) to the request's "
    "longest text; the vocabulary is assets/vocab.txt",
    "input_mask": "1 = real token, 0 = padding",
    "patch_features": "backbone features of each patch, in the layout's order "
    "(as `kaleido-tf prepare` writes them)",
    "patch_boxes": "[x1, x2, y1, y2, w*h] of each patch, divided by the crop's width "
    "and height",
    "description": "raw product description (UTF-8); tokenised in the graph",
}
TOKENIZE_DOCS = {
    "input_ids": "`[CLS] pieces [SEP]` then 0 ([PAD]) to the longest text of the "
    "request, truncated to max_seq_length",
    "input_mask": "1 = real token, 0 = padding",
}


class ServingModule(tf.Module):
    """A trained VLModel with the serving functions of one task.

    Args:
        model: The VLModel (built, weights restored).
        task_signature: The task's entry of ``TASK_SIGNATURES``.
        vocabulary: The vocabulary asset and tokenizer.
        num_patches: P of the model's patch layout.
        feature_dim: D, the patch feature size the model was trained on.
        max_sequence_length: The largest T the encoder's position table allows.
        with_text_signature: Also serve raw strings (``<task>_text``,
            ``tokenize``).

    Raises:
        ConfigError: The model cannot serve the task (``check_model``).
    """

    def __init__(
        self,
        model: Any,
        task_signature: TaskSignature,
        vocabulary: ServingVocabulary,
        num_patches: int,
        feature_dim: int,
        max_sequence_length: int,
        with_text_signature: bool = False,
    ) -> None:
        super().__init__(name="kaleido_serving")
        task_signature.check_model(model)
        self.model = model
        self.vocabulary = vocabulary
        self.task = task_signature.task
        self._task_signature = task_signature
        self.resources = (
            task_signature.make_resources(vocabulary)
            if task_signature.make_resources is not None
            else None
        )
        self.num_patches = int(num_patches)
        self.feature_dim = int(feature_dim)
        self.max_sequence_length = int(max_sequence_length)
        self.with_text_signature = bool(with_text_signature)
        patches = [
            tf.TensorSpec(
                [None, self.num_patches, self.feature_dim],
                tf.float32,
                name="patch_features",
            ),
            tf.TensorSpec(
                [None, self.num_patches, schema.BOX_DIM], tf.float32, name="patch_boxes"
            ),
        ]
        text = [
            tf.TensorSpec([None, None], tf.int32, name="input_ids"),
            tf.TensorSpec([None, None], tf.int32, name="input_mask"),
        ]
        description = [tf.TensorSpec([None], tf.string, name="description")]
        if task_signature.image_only:
            if self.with_text_signature:
                raise ConfigError(
                    f"export --task {self.task} takes images only: drop "
                    "--with-text-signature"
                )
            self.serve_ids = tf.function(self._serve_image, input_signature=patches)
        else:
            self.serve_ids = tf.function(
                self._serve_ids, input_signature=text + patches
            )
        if self.with_text_signature:
            self.serve_text = tf.function(
                self._serve_text, input_signature=description + patches
            )
            self.tokenize = tf.function(self._tokenize, input_signature=description)

    def signatures(self) -> dict[str, Any]:
        """Signature name -> concrete function, for ``tf.saved_model.save``."""
        ids = self.serve_ids.get_concrete_function()
        out = {"serving_default": ids, self.task: ids}
        if self.with_text_signature:
            out[self.task + TEXT_SIGNATURE_SUFFIX] = (
                self.serve_text.get_concrete_function()
            )
            out[TOKENIZE_SIGNATURE] = self.tokenize.get_concrete_function()
        return out

    def signature_docs(self) -> dict[str, dict[str, Any]]:
        """Per signature: summary, and each input and output's dtype, shape, meaning.

        Shapes list -1 for dynamic dimensions, as ``saved_model_cli`` shows them.
        """
        task = self._task_signature
        docs = {}
        for name, function in self.signatures().items():
            inputs = {
                spec.name: spec
                for spec in tf.nest.flatten(function.structured_input_signature)
            }
            outputs = function.structured_outputs
            if name == TOKENIZE_SIGNATURE:
                summary = "WordPiece ids of raw descriptions, as the model reads them."
                meanings = TOKENIZE_DOCS
            else:
                summary = task.summary
                meanings = dict(task.outputs)
                if name.endswith(TEXT_SIGNATURE_SUFFIX):
                    summary += " Takes the description as a string."
            if name == "serving_default":
                summary = f"Same as `{self.task}`. " + summary
            docs[name] = {
                "summary": summary,
                "inputs": {
                    key: _tensor_doc(spec, INPUT_DOCS[key])
                    for key, spec in sorted(inputs.items())
                },
                "outputs": {
                    key: _tensor_doc(spec, meanings[key])
                    for key, spec in sorted(outputs.items())
                },
            }
        return docs

    def _features(
        self, input_ids, input_mask, patch_features, patch_boxes
    ) -> dict[str, tf.Tensor]:
        # The encoder's inputs, after checks that name the offending input.
        batch = tf.shape(input_ids)[0]
        checks = [
            tf.debugging.assert_equal(
                tf.shape(input_mask),
                tf.shape(input_ids),
                message="input_mask must have the shape of input_ids, [B, T]",
            ),
            tf.debugging.assert_equal(
                tf.shape(patch_features)[0],
                batch,
                message="patch_features must have the batch size B of input_ids",
            ),
            tf.debugging.assert_equal(
                tf.shape(patch_boxes)[0],
                batch,
                message="patch_boxes must have the batch size B of input_ids",
            ),
            tf.debugging.assert_less_equal(
                tf.shape(input_ids)[1],
                self.max_sequence_length,
                message="input_ids has more tokens T than the encoder's "
                f"max_sequence_length {self.max_sequence_length}",
            ),
        ]
        features = {
            "input_ids": input_ids,
            "input_mask": input_mask,
            "segment_ids": tf.zeros_like(input_ids),
            "patch_features": patch_features,
            "patch_boxes": patch_boxes,
            "patch_mask": tf.ones(tf.shape(patch_features)[:2], tf.int32),
        }
        with tf.control_dependencies(checks):  # every input waits for the checks
            return {key: tf.identity(value) for key, value in features.items()}

    def _serve_ids(self, input_ids, input_mask, patch_features, patch_boxes):
        features = self._features(input_ids, input_mask, patch_features, patch_boxes)
        return self._task_signature.compute(self.model, features, self.resources)

    def _serve_image(self, patch_features, patch_boxes):
        features = {
            "patch_features": patch_features,
            "patch_boxes": patch_boxes,
            "patch_mask": tf.ones(tf.shape(patch_features)[:2], tf.int32),
        }
        return self._task_signature.compute(self.model, features, self.resources)

    def _serve_text(self, description, patch_features, patch_boxes):
        input_ids, input_mask = self.vocabulary.tokenize(description)
        return self._serve_ids(input_ids, input_mask, patch_features, patch_boxes)

    def _tokenize(self, description):
        input_ids, input_mask = self.vocabulary.tokenize(description)
        return {"input_ids": input_ids, "input_mask": input_mask}


def _tensor_doc(spec: tf.TensorSpec, meaning: str) -> dict[str, Any]:
    shape = [-1 if d is None else int(d) for d in spec.shape.as_list()]
    return {"dtype": spec.dtype.name, "shape": shape, "meaning": meaning}
