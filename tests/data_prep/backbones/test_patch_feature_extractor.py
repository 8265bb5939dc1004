"""The patch feature extractor: batching, local weights, seeded random weights."""

import numpy as np
import pytest

from data_prep.backbones.patch_feature_extractor import PatchFeatureExtractor
from kaleido_tf.errors import CheckpointError


@pytest.fixture(scope="module")
def extractor():
    return PatchFeatureExtractor("mobilenet_v3_small", 32, None, seed=0, batch_size=4)


@pytest.fixture(scope="module")
def patches():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)


def test_batched_features_equal_one_patch_at_a_time(extractor, patches):
    batched = extractor(patches)  # batches of 4: [0:4], [4:7]
    assert batched.shape == (7, extractor.feature_dim) and extractor.feature_dim == 576
    single = np.concatenate([extractor(patches[i : i + 1]) for i in range(7)])
    # oneDNN picks other conv algorithms per batch size: float32 rounding only,
    # far below the float16 resolution (~1e-3 relative) the records store.
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-3)
    # Features depend on the patch: not constant, well scaled for float16.
    assert np.abs(batched[0] - batched[1]).max() > 1e-3
    assert 1e-3 < np.abs(batched).mean() < 1e3


def test_random_weights_are_seeded(extractor, patches):
    again = PatchFeatureExtractor("mobilenet_v3_small", 32, None, seed=0)
    other = PatchFeatureExtractor("mobilenet_v3_small", 32, None, seed=1)
    assert again.fingerprint() == extractor.fingerprint() != other.fingerprint()
    np.testing.assert_allclose(again(patches), extractor(patches), rtol=1e-4, atol=1e-3)
    assert not np.allclose(other(patches), extractor(patches))


def test_weights_load_from_a_local_h5_file(tmp_path, extractor, patches):
    source = PatchFeatureExtractor("mobilenet_v3_small", 32, None, seed=5)
    path = tmp_path / "mobilenet_v3_small_notop.h5"
    source.model.save_weights(str(path))
    loaded = PatchFeatureExtractor("mobilenet_v3_small", 32, path)
    assert loaded.fingerprint() == source.fingerprint()
    np.testing.assert_allclose(loaded(patches), source(patches), rtol=1e-6, atol=1e-6)
    described = loaded.describe()
    assert described["weights"] == str(path) and described["random_init_seed"] is None


def test_weights_of_another_network_are_refused(tmp_path, extractor):
    path = tmp_path / "wrong.h5"
    PatchFeatureExtractor("resnet50", 32, None).model.save_weights(str(path))
    with pytest.raises(CheckpointError, match="do not fit mobilenet_v3_small"):
        PatchFeatureExtractor("mobilenet_v3_small", 32, path)
    with pytest.raises(CheckpointError, match="not found"):
        PatchFeatureExtractor("mobilenet_v3_small", 32, tmp_path / "absent.h5")
    with pytest.raises(CheckpointError, match="unknown backbone"):
        PatchFeatureExtractor("vgg", 32, None)


def test_wrong_patch_shape(extractor):
    with pytest.raises(ValueError, match="expected"):
        extractor(np.zeros((2, 16, 16, 3), np.uint8))
