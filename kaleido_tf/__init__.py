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
