"""``prepare-pixels`` end to end on a small Fashion-Gen-layout file: JPEGs, teacher
features recomputed independently, cluster probabilities recomputed in numpy."""

import argparse

import cv2
import numpy as np
import pytest

from data_prep.backbones.patch_feature_extractor import PatchFeatureExtractor
from data_prep.kpg.foreground import BackgroundDifferenceCropper, extract_crop
from kaleido_tf.cli import prepare_pixels
from kaleido_tf.inputs.pixel_records import pixel_dataset
from kaleido_tf.manifest import read_manifest
from tests.fixtures.fashiongen_h5 import default_products, write_fashiongen_h5

S = 32
CONFIG = (
    "layout: pixels224\n"
    f"crop: {{method: background_difference, output_size: {S}}}\n"
    "jpeg_quality: 95\n"
    "teacher: {backbone: mobilenet_v3_small, batch_size: 4, num_clusters: 3, "
    "kmeans_batch_size: 16, target_max_probability: 0.6}\n"
    "text: {max_seq_length: 12, demo_vocab_size: 200}\n"
    "output: {records_per_shard: 3}\n"
)


def cli(*argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    prepare_pixels.add_parser(sub).add_argument("--quiet", action="store_true")
    args = parser.parse_args(["prepare-pixels", *map(str, argv), "--quiet"])
    args.argv = ["prepare-pixels", *map(str, argv)]
    return prepare_pixels.run(args)


def psnr(a, b):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return 10.0 * np.log10(255.0**2 / mse)


def records(folder):
    manifest = read_manifest(folder)
    return manifest, [
        {k: v.numpy() for k, v in r.items()} for r in pixel_dataset(folder, manifest)
    ]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = tmp_path_factory.mktemp("pixels")
    products = default_products()
    # 6 images: products with 1, 2 and 3 views (+ one empty text, skipped).
    h5 = write_fashiongen_h5(root / "fg_train.h5", [products[i] for i in (0, 1, 2, 4)])
    config = root / "tiny_pixels.yaml"
    config.write_text(CONFIG)
    out = root / "train"
    base = ("--h5", h5, "--config", config, "--backbone-weights", "none")
    assert cli(*base, "--out", out) == 0
    return {"root": root, "h5": h5, "config": config, "out": out, "base": base}


def test_jpeg_round_trip_and_teacher_features(build):
    import h5py

    manifest, recs = records(build["out"])
    assert manifest["counts"]["images"] == 6 == len(recs)
    assert manifest["image_size"] == S and manifest["jpeg_quality"] == 95
    with h5py.File(build["h5"]) as f:
        images = f["input_image"][:]
    cropper = BackgroundDifferenceCropper()
    extractor = PatchFeatureExtractor("mobilenet_v3_small", S, None, seed=0)
    for r in recs:
        crop = extract_crop(
            images[r["source_row"]], cropper.crop_box(images[r["source_row"]]), S
        )
        image = r["image"]
        assert image.shape == (S, S, 3)
        # JPEG round trip: as close to the crop as an independent encoder (OpenCV)
        # at the same quality gets.
        ok, data = cv2.imencode(".jpg", crop[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        reference = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
        ours, theirs = psnr(image * 255.0, crop), psnr(reference, crop)
        assert ours > 28.0 and ours > theirs - 0.5, (ours, theirs)
        # r(v) = the teacher applied to the decoded pixels, recomputed here.
        pixels = np.round(image * 255.0).astype(np.uint8)
        expected = extractor(pixels[None])[0]
        np.testing.assert_allclose(
            r["teacher_features"], expected, rtol=2e-3, atol=2e-3
        )
    teacher = manifest["teacher"]
    assert teacher["backbone"]["fingerprint"] == extractor.fingerprint()
    assert teacher["random_init_seed"] == 0 and manifest["backbone_weights_random"]
    assert manifest["feature_dim"] == 576 and manifest["num_clusters"] == 3


def test_cluster_probabilities_match_numpy(build):
    manifest, recs = records(build["out"])
    npz = build["out"] / "teacher_clusters.npz"
    with np.load(npz) as z:
        mu, t = z["centroids"].astype(np.float64), float(z["temperature"])
    f = np.stack([r["teacher_features"] for r in recs]).astype(np.float64)
    d = ((f[:, None, :] - mu[None]) ** 2).sum(-1)
    logits = -d / t
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    got = np.stack([r["teacher_clusters"] for r in recs])
    np.testing.assert_allclose(got, p, atol=2e-3)
    # T was bisected on these very images: the mean max-probability is the target.
    assert abs(p.max(1).mean() - 0.6) < 2e-3
    assert abs(manifest["counts"]["mean_max_probability"] - 0.6) < 2e-3
    import hashlib

    assert (
        manifest["teacher"]["clusters_sha256"]
        == hashlib.sha256(npz.read_bytes()).hexdigest()
    )
    assert manifest["teacher"]["temperature"] == pytest.approx(t)
    assert not (build["out"] / "teacher_cache").exists() or not list(
        (build["out"] / "teacher_cache").iterdir()
    )


def test_resume(build):
    out = build["out"]
    shards = {p.name: p.read_bytes() for p in out.glob("*.tfrecord")}
    assert len(shards) == 3
    victim = sorted(shards)[1]
    (out / victim).unlink()
    (out / f"{victim}.done.json").unlink()
    (out / "manifest.json").unlink()
    assert cli(*build["base"], "--out", out) == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.tfrecord")} == shards
