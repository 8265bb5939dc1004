"""Soft k-means teacher targets: bisection of T, reuse across splits, clear errors."""

import argparse

import numpy as np
import pytest

from data_prep.backbones.patch_feature_extractor import PatchFeatureExtractor
from data_prep.pixels.teacher_clusters import (
    TeacherClusters,
    choose_temperature,
    fit_teacher_clusters,
)
from kaleido_tf.cli import prepare_pixels
from kaleido_tf.errors import CheckpointError, ConfigError, DataError
from kaleido_tf.manifest import read_manifest
from tests.fixtures.fashiongen_h5 import default_products, write_fashiongen_h5

CONFIG = (
    "layout: pixels224\n"
    "crop: {method: none, output_size: 32}\n"
    "teacher: {backbone: mobilenet_v3_small, num_clusters: 3, kmeans_batch_size: 8}\n"
    "text: {max_seq_length: 12, demo_vocab_size: 200}\n"
    "output: {records_per_shard: 4}\n"
)


def cli(*argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    prepare_pixels.add_parser(sub).add_argument("--quiet", action="store_true")
    args = parser.parse_args(["prepare-pixels", *map(str, argv), "--quiet"])
    args.argv = ["prepare-pixels", *map(str, argv)]
    return prepare_pixels.run(args)


def numpy_mean_max(f, mu, t):
    d = ((f[:, None, :].astype(np.float64) - mu[None]) ** 2).sum(-1)
    z = -d / t
    p = np.exp(z - z.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).max(1).mean()


def test_fit_bisects_temperature_to_the_target():
    rng = np.random.default_rng(0)
    f = np.concatenate([rng.normal(c, 1.0, (20, 5)) for c in (0.0, 4.0, 9.0)])
    clusters = fit_teacher_clusters(f, 4, 0.5, 0, 16, 50, 1000, "abc")
    assert clusters.centroids.shape == (4, 5) and clusters.fit_images == 60
    got = numpy_mean_max(f, clusters.centroids.astype(np.float64), clusters.temperature)
    assert abs(got - 0.5) < 1e-4 and abs(clusters.mean_max_probability - 0.5) < 1e-4
    p = clusters.probabilities(f)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
    # A larger target needs a lower temperature.
    d = ((f[:, None] - clusters.centroids[None]) ** 2).sum(-1)
    assert choose_temperature(d, 0.8)[0] < clusters.temperature


def test_save_load_round_trip(tmp_path):
    c = TeacherClusters(np.eye(3, 4, dtype=np.float32), 0.7, 0.5, 0.5, 1, 9, 9, "fp")
    loaded = TeacherClusters.load(c.save(tmp_path / "c.npz"))
    np.testing.assert_array_equal(loaded.centroids, c.centroids)
    assert loaded == dataclass_copy(c, loaded.centroids)


def dataclass_copy(c, centroids):
    import dataclasses

    return dataclasses.replace(c, centroids=centroids)


def test_unreachable_targets_and_too_few_images():
    with pytest.raises(DataError, match="at least"):
        fit_teacher_clusters(np.zeros((2, 3)), 3, 0.5, 0, 4, 5, 10, "fp")
    with pytest.raises(DataError, match="identical"):
        choose_temperature(np.ones((4, 3)), 0.5)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    products = default_products()
    h5 = write_fashiongen_h5(root / "fg_train.h5", [products[i] for i in (1, 2)])
    config = root / "c.yaml"
    config.write_text(CONFIG)
    return root, h5, config


def test_clusters_of_another_split_are_reused_or_refused(small, tmp_path):
    root, h5, config = small
    fingerprint = PatchFeatureExtractor("mobilenet_v3_small", 32, None, 0).fingerprint()
    mu = np.linspace(0, 1, 3 * 576, dtype=np.float32).reshape(3, 576)
    good = TeacherClusters(mu, 3.0, 0.5, 0.5, 0, 100, 100, fingerprint)
    good.save(tmp_path / "good.npz")
    base = ("--h5", h5, "--config", config, "--backbone-weights", "none")
    assert (
        cli(*base, "--out", tmp_path / "v", "--teacher-clusters", tmp_path / "good.npz")
        == 0
    )
    manifest = read_manifest(tmp_path / "v")
    assert manifest["teacher"]["temperature"] == 3.0
    assert manifest["teacher"]["clusters_fitted_on"].endswith("good.npz")
    assert (
        manifest["image_source"] == "full_image" and manifest["counts"]["images"] == 5
    )
    TeacherClusters(mu, 3.0, 0.5, 0.5, 0, 1, 1, "other").save(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="another teacher"):
        cli(*base, "--out", tmp_path / "w", "--teacher-clusters", tmp_path / "bad.npz")


def test_clear_errors(small, tmp_path):
    root, h5, config = small
    base = ("--h5", h5, "--out", tmp_path / "o")
    with pytest.raises(CheckpointError, match="not found"):
        cli(*base, "--config", config, "--backbone-weights", tmp_path / "no.h5")
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("num_clusters: 3", "num_clusters: 3, clusters: 2"))
    with pytest.raises(ConfigError, match="clusters"):
        cli(*base, "--config", bad, "--backbone-weights", "none")
    bad.write_text(
        CONFIG.replace(
            "num_clusters: 3", "num_clusters: 3, target_max_probability: 0.2"
        )
    )
    with pytest.raises(ConfigError, match="target_max_probability"):
        cli(*base, "--config", bad, "--backbone-weights", "none")
    with pytest.raises(DataError, match="not found"):
        cli(
            *base,
            "--config",
            config,
            "--backbone-weights",
            "none",
            "--teacher-clusters",
            tmp_path / "x.npz",
        )
