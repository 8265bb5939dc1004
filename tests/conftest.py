"""Test set-up: Keras 2 before TensorFlow loads, seeds, markers, shared fixtures."""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.fixtures.fashiongen_h5 import default_products, write_fashiongen_h5  # noqa: E402


@pytest.fixture(autouse=True)
def _seeds():
    import tensorflow as tf

    tf.random.set_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def fashiongen_h5(tmp_path_factory):
    """A small file with the real Fashion-Gen layout (64x64 images)."""
    path = tmp_path_factory.mktemp("fashiongen") / "fashiongen_256_256_train.h5"
    write_fashiongen_h5(path, default_products())
    return path


@pytest.fixture(scope="session")
def tiny_prepare_config(tmp_path_factory):
    """A data config small enough for unit tests: 64 px crops, 32 px patches."""
    path = tmp_path_factory.mktemp("configs") / "tiny_kaleido.yaml"
    path.write_text(
        "layout: kaleido\n"
        "crop: {method: background_difference, output_size: 64}\n"
        "backbone: {name: mobilenet_v3_small, patch_size: 32, batch_size: 50}\n"
        "text: {max_seq_length: 16, demo_vocab_size: 300}\n"
        "output: {records_per_shard: 4, images_per_batch: 3}\n"
    )
    return path
