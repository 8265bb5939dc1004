"""Starting a fine-tuning run from a pretraining run of this project.

The encoder always comes from the pretraining checkpoint; a head comes too when the
fine-tuning model has a head of the same id and type (``itm`` for retrieval: the
zero-shot model is the starting point; ``mlm`` for captioning: tokens are predicted
by the pretrained masked-LM head). Every other head starts from its initialiser.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tensorflow as tf

from kaleido_tf.errors import CheckpointError


@dataclasses.dataclass
class PretrainedLoad:
    """What ``load_pretrained_weights`` restored.

    Attributes:
        checkpoint: The checkpoint prefix read.
        heads_restored: Head ids whose weights came from the checkpoint.
        heads_initialised: Head ids left at their initial values.
        variables_restored: Model variables given checkpoint values.
    """

    checkpoint: str
    heads_restored: list[str]
    heads_initialised: list[str]
    variables_restored: int

    def summary(self) -> str:
        """One line for the log."""
        fresh = ", ".join(self.heads_initialised) or "none"
        return (
            f"initialised from {self.checkpoint}: encoder + heads "
            f"{self.heads_restored or 'none'} ({self.variables_restored} variables); "
            f"new heads: {fresh}"
        )


def resolve_checkpoint(source: str | Path) -> str:
    """A checkpoint prefix from a run folder or a prefix.

    Raises:
        CheckpointError: Neither a run folder with checkpoints nor a prefix.
    """
    from kaleido_tf.checkpoints.trained_model import latest_checkpoint

    path = Path(source)
    if path.is_dir():
        return latest_checkpoint(path)
    if Path(f"{path}.index").is_file():
        return str(path)
    raise CheckpointError(
        f"--init-from {source}: neither a pretraining run folder nor a checkpoint "
        "prefix (e.g. RUN/checkpoints/ckpt-1000)"
    )


def _checkpoint_heads(prefix: str) -> set[str]:
    names = [name for name, _ in tf.train.list_variables(prefix)]
    heads = set()
    for name in names:
        parts = name.split("/")
        if len(parts) > 3 and parts[0] == "model" and parts[1] == "heads":
            heads.add(parts[2])
    return heads


def load_pretrained_weights(model, source: str | Path) -> PretrainedLoad:
    """Restores the encoder and the shared heads of ``model`` from a pretraining run.

    Args:
        model: A built VLModel (fine-tuning heads).
        source: A pretraining run folder (its latest checkpoint) or a prefix.

    Returns:
        A PretrainedLoad.

    Raises:
        CheckpointError: Missing checkpoint, or encoder / head shapes that differ
            (e.g. another hidden size or vocabulary).
    """
    prefix = resolve_checkpoint(source)
    in_checkpoint = _checkpoint_heads(prefix)
    shared = sorted(h for h in model.heads if h in in_checkpoint)
    fresh = sorted(h for h in model.heads if h not in in_checkpoint)
    before = [v.numpy() for v in model.weights]
    mirror = tf.train.Checkpoint(
        model=tf.train.Checkpoint(
            encoder=model.encoder, heads={h: model.heads[h] for h in shared}
        )
    )
    try:
        status = mirror.restore(prefix)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, tf.errors.OpError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:300]
        raise CheckpointError(
            f"{prefix}: cannot initialise this model from it ({first}); the "
            "pretraining and fine-tuning configs must share model.encoder"
        ) from None
    changed = sum(
        int(not (b == v.numpy()).all()) for b, v in zip(before, model.weights)
    )
    return PretrainedLoad(prefix, shared, fresh, changed)
