"""A model trained by this project, back from its run folder.

``kaleido-tf pretrain`` and ``kaleido-tf finetune`` write ``config.yaml`` (the resolved
experiment) and ``checkpoints/ckpt-<step>`` (a ``tf.train.Checkpoint`` with ``model``
and ``optimizer``) into their ``--model-dir``. Evaluation, export and fine-tuning read
them back here, so every consumer restores the same way.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from kaleido_tf.errors import CheckpointError

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
STAGES_FILE = "stages.json"  # written by training/multi_stage.py


def final_stage_dir(model_dir: str | Path) -> Path:
    """The run folder that holds a run's newest weights.

    A multi-stage run (``train.stages``) keeps each stage in ``stage_<i>_<name>/``
    under its root and lists them in ``stages.json``; its weights are those of the
    last stage that has saved a checkpoint. Any other folder is its own answer.
    """
    import json

    root = Path(model_dir)
    path = root / STAGES_FILE
    if not path.is_file():
        return root
    try:
        stages = json.loads(path.read_text("utf-8"))["stages"]
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path} is unreadable ({e})") from None
    for stage in reversed(stages):
        folder = root / stage["dir"]
        if any((folder / CHECKPOINT_DIR).glob("ckpt-*.index")):
            return folder
    raise CheckpointError(
        f"{root}: no stage of this multi-stage run has saved a checkpoint yet"
    )


@dataclasses.dataclass
class TrainedModel:
    """A restored model.

    Attributes:
        config: The run's ExperimentConfig.
        model: The Keras model with the checkpoint's weights.
        checkpoint: The checkpoint prefix that was restored.
        step: The optimizer step of that checkpoint (from its name).
    """

    config: object
    model: object
    checkpoint: str
    step: int


def run_config(model_dir: str | Path):
    """The ExperimentConfig a run folder was trained with.

    Raises:
        CheckpointError: No ``config.yaml`` in the folder.
    """
    from kaleido_tf.config.experiment import ExperimentConfig
    from kaleido_tf.config.loader import load_dataclass

    path = final_stage_dir(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{model_dir}: no {CONFIG_FILE}; give the --model-dir of a "
            "`kaleido-tf pretrain` or `kaleido-tf finetune` run"
        )
    return load_dataclass(ExperimentConfig, path, [])


def latest_checkpoint(model_dir: str | Path) -> str:
    """The newest checkpoint prefix of a run folder.

    Raises:
        CheckpointError: The folder holds no checkpoint.
    """
    import tensorflow as tf

    found = tf.train.latest_checkpoint(str(final_stage_dir(model_dir) / CHECKPOINT_DIR))
    if found is None:
        raise CheckpointError(
            f"{model_dir}/{CHECKPOINT_DIR}: no checkpoint (has the run saved one?)"
        )
    return found


def restore_model_weights(model, checkpoint: str | Path) -> None:
    """Loads the ``model`` branch of a training checkpoint into ``model``.

    Every variable of ``model`` must be found in the checkpoint (the optimizer slots
    and variables of other heads in the checkpoint are ignored).

    Raises:
        CheckpointError: Unreadable checkpoint, or a model variable it lacks.
    """
    import tensorflow as tf

    try:
        status = tf.train.Checkpoint(model=model).restore(str(checkpoint))
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, tf.errors.OpError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:300]
        raise CheckpointError(
            f"{checkpoint}: does not hold this model's weights ({first})"
        ) from None


def load_trained_model(
    model_dir: str | Path, checkpoint: str | Path | None = None
) -> TrainedModel:
    """Builds the run's model from its ``config.yaml`` and restores a checkpoint.

    Args:
        model_dir: A run folder.
        checkpoint: A checkpoint prefix (default: the latest in the folder).

    Returns:
        A TrainedModel.

    Raises:
        CheckpointError: Missing config or checkpoint, or weights that do not fit.
    """
    import kaleido_tf

    config = run_config(model_dir)
    prefix = str(checkpoint) if checkpoint is not None else latest_checkpoint(model_dir)
    model = kaleido_tf.build_model(config)
    restore_model_weights(model, prefix)
    match = re.search(r"-(\d+)$", prefix)
    return TrainedModel(config, model, prefix, int(match.group(1)) if match else 0)
