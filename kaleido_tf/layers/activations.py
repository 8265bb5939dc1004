"""Serialisable activations used by the transformer and heads."""

import tensorflow as tf
import tf_keras


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
def gelu_tanh(x: tf.Tensor) -> tf.Tensor:
    """GELU with the tanh approximation, as Google's BERT (``modeling.py``) computes it.

    Google's checkpoints were trained with this form; using it keeps a loaded BERT's
    outputs equal to the original's.
    """
    return tf.nn.gelu(x, approximate=True)
