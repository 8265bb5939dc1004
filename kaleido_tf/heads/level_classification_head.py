"""Classifier over the concatenated hidden states of one kaleido level (RR, JPS, CP)."""

from __future__ import annotations

import tensorflow as tf
import tf_keras


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class LevelClassificationHead(tf_keras.layers.Layer):
    """Flattens the hidden states of a level's patches and applies Dense(C).

    Rotation Recognition uses level 1 (1 patch, 4 classes), Jigsaw Puzzle Solving
    level 2 (4 patches concatenated, 24 permutations) and Camouflage Prediction
    level 3 (9 patches concatenated, 9 classes), as in the released code.

    Args:
        num_classes: C.
        patch_start: Index of the level's first patch in the patch sequence.
        num_level_patches: Patches of the level.
        initializer_range: Stddev of the truncated-normal initialiser.

    Call arguments:
        sequence_output: float32 [B, T + P, H].
        text_length: int32 scalar T; patches start after the text.

    Returns:
        float32 [B, C] logits.

    Reference: Kaleido-BERT §3.5 Task #3 (I) Eq. 3, (II) Eq. 4, (III) Eq. 5.
    """

    def __init__(
        self,
        num_classes: int,
        patch_start: int,
        num_level_patches: int,
        initializer_range: float = 0.02,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.patch_start = patch_start
        self.num_level_patches = num_level_patches
        self.initializer_range = initializer_range
        self.logits = tf_keras.layers.Dense(
            num_classes,
            kernel_initializer=tf_keras.initializers.TruncatedNormal(
                stddev=initializer_range
            ),
            name="logits",
        )

    def call(self, sequence_output, text_length):
        start = text_length + self.patch_start
        level = sequence_output[:, start : start + self.num_level_patches]
        hidden = sequence_output.shape[-1]
        flat = tf.reshape(level, [-1, self.num_level_patches * hidden])  # [B, n*H]
        return self.logits(flat)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            patch_start=self.patch_start,
            num_level_patches=self.num_level_patches,
            initializer_range=self.initializer_range,
        )
        return config
