"""``prepare-regions`` end to end: detector path == bottom-up import, byte for byte."""

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from data_prep.regions.bottom_up_features import (
    write_bottom_up_npz,
    write_bottom_up_tsv,
)
from data_prep.regions.detector_regions import DetectorRegionSource
from data_prep.synthetic.catalog import COLOURS
from kaleido_tf.cli import prepare_regions
from kaleido_tf.errors import DataError
from kaleido_tf.inputs.parse import record_dataset
from kaleido_tf.manifest import manifest_fields, read_manifest
from kaleido_tf.schema import record_fields
from tests.fixtures.fashiongen_h5 import default_products, write_fashiongen_h5

LAYER = "expanded_conv/project/BatchNorm"
CONFIG = (
    "layout: regions36\n"
    "regions: {feature_dim: 16, num_classes: 15, class_distribution: true}\n"
    f"backbone: {{name: mobilenet_v3_small, image_size: 64, output_layer: {LAYER}, "
    "roi_size: 3}\n"
    "text: {max_seq_length: 12, demo_vocab_size: 200}\n"
    "output: {records_per_shard: 3}\n"
)


def cli(*argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    prepare_regions.add_parser(sub).add_argument("--quiet", action="store_true")
    args = parser.parse_args(["prepare-regions", *map(str, argv), "--quiet"])
    args.argv = ["prepare-regions", *map(str, argv)]
    return prepare_regions.run(args)


def shards(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.tfrecord"))}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = tmp_path_factory.mktemp("regions")
    products = default_products()
    h5 = write_fashiongen_h5(root / "fg_train.h5", [products[i] for i in (0, 1, 2, 4)])
    config = root / "tiny_regions.yaml"
    config.write_text(CONFIG)
    detector = root / "det"
    assert cli("--export-reference-detector", detector) == 0
    base = ("--h5", h5, "--config", config)
    assert (
        cli(
            *base,
            "--out",
            root / "det_out",
            "--detector",
            detector,
            "--backbone-weights",
            "none",
        )
        == 0
    )
    # The same detections, exported to the bottom-up formats by the user's route.
    source = DetectorRegionSource(detector, 36, "mobilenet_v3_small", 64, LAYER, 3)
    with h5py.File(h5) as f:
        pids = f["input_productID"][:, 0]
        images = f["input_image"][:]
    items, seen = [], {}
    for pid, image in zip(pids, images):
        seen[pid] = seen.get(pid, 0) + 1
        if pid != products[4]["product_id"]:  # empty text: skipped by prepare
            items.append((f"{pid}_{seen[pid]}", source(image)))
    write_bottom_up_tsv(root / "feats.tsv", items)
    for image_id, det in items:
        write_bottom_up_npz(root / "npz", image_id, det)
    return {
        "root": root,
        "base": base,
        "detector": detector,
        "items": items,
        "source": source,
    }


def test_detector_path_and_bottom_up_imports_give_identical_shards(build):
    root, base = build["root"], build["base"]
    assert (
        cli(*base, "--out", root / "tsv_out", "--bottom-up-tsv", root / "feats.tsv")
        == 0
    )
    assert cli(*base, "--out", root / "npz_out", "--bottom-up-npz", root / "npz") == 0
    det = shards(root / "det_out")
    assert len(det) == 3  # 7 rows, 3 per shard
    assert shards(root / "tsv_out") == det
    assert shards(root / "npz_out") == det
    for name in ("products.jsonl", "vocab.txt", "categories.json"):
        assert (root / "tsv_out" / name).read_bytes() == (
            root / "det_out" / name
        ).read_bytes()


def test_manifest_records_the_detector(build):
    root = build["root"]
    manifest = read_manifest(
        root / "det_out", layout="regions36", feature_dim=16, max_seq_length=12
    )
    assert manifest["num_classes"] == 15 and manifest["class_distribution"] is True
    assert manifest_fields(manifest) == record_fields(
        *_layout_args(), num_classes=15, class_distribution=True
    )
    entry = manifest["detector"]
    pb = (build["detector"] / "saved_model.pb").read_bytes()
    assert (
        entry["kind"] == "savedmodel"
        and entry["sha256"] == hashlib.sha256(pb).hexdigest()
    )
    assert entry["class_names"] == list(COLOURS)
    assert entry["backbone"]["fingerprint"] == build["source"].fingerprint()
    assert manifest["backbone_weights_random"] is True
    assert (
        manifest["counts"]["images"] == 6
        and manifest["counts"]["skipped_empty_text_rows"] == 1
    )
    tsv = read_manifest(root / "tsv_out")
    digest = hashlib.sha256((root / "feats.tsv").read_bytes()).hexdigest()
    assert tsv["detector"]["kind"] == "bottom_up_tsv" and tsv["detector"]["sha256"] == [
        digest
    ]


def _layout_args():
    from kaleido_tf.schema import get_layout

    return get_layout("regions36"), 12, 16


def test_records_hold_the_detections(build):
    root = build["root"]
    manifest = read_manifest(root / "det_out")
    records = list(record_dataset(root / "det_out", manifest))
    dets = dict(build["items"])
    assert sorted(r["image_id"].numpy().decode() for r in records) == sorted(dets)
    for rec in records:
        d = dets[rec["image_id"].numpy().decode()]
        n = int(rec["num_regions"])
        order = np.argsort(-d.scores, kind="stable")[:36]
        assert n == min(36, d.num_boxes) and n > 0
        np.testing.assert_allclose(
            rec["region_features"].numpy()[:n], d.features[order], rtol=2e-3, atol=2e-3
        )  # float16 storage
        assert rec["region_classes"].numpy()[:n].tolist() == d.classes[order].tolist()
        assert (rec["region_classes"].numpy()[n:] == -1).all()
        w, h = rec["image_size"].numpy()
        box = d.boxes[order[0]]
        np.testing.assert_allclose(
            rec["region_locations"].numpy()[0],
            [
                box[0] / w,
                box[1] / h,
                box[2] / w,
                box[3] / h,
                (box[2] - box[0]) * (box[3] - box[1]) / (w * h),
            ],
            rtol=1e-5,
        )
        probs = rec["region_class_probs"].numpy()[:n]
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-2)


def test_bad_sources_are_refused_before_anything_is_written(build, tmp_path):
    root, base = build["root"], build["base"]
    items = build["items"]
    write_bottom_up_tsv(tmp_path / "partial.tsv", items[:-2])
    with pytest.raises(DataError, match=f"lacks 2 of 6 image ids.*{items[-1][0]}"):
        cli(*base, "--out", tmp_path / "a", "--bottom-up-tsv", tmp_path / "partial.tsv")
    with pytest.raises(DataError, match=r"features have shape \(\d+, 16\), expected"):
        cli(
            *base,
            "--out",
            tmp_path / "b",
            "--bottom-up-tsv",
            root / "feats.tsv",
            "--set",
            "regions.feature_dim=17",
        )
    with pytest.raises(DataError, match="class scores have shape"):
        cli(
            *base,
            "--out",
            tmp_path / "c",
            "--bottom-up-tsv",
            root / "feats.tsv",
            "--set",
            "regions.num_classes=20",
        )
    for out in ("a", "b", "c"):
        assert not list((tmp_path / out).glob("*.tfrecord*"))
        assert not (tmp_path / out / "manifest.json").exists()
    # Malformed base64 in the 5th image (second shard): the first shard is kept,
    # the second is not written, no temporary file or manifest is left.
    lines = (root / "feats.tsv").read_text().splitlines()
    cells = lines[5].split("\t")  # line 0 is the header
    cells[-2] = "%%" + cells[-2][2:]
    lines[5] = "\t".join(cells)
    (tmp_path / "broken.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="not valid base64"):
        cli(*base, "--out", tmp_path / "d", "--bottom-up-tsv", tmp_path / "broken.tsv")
    assert [p.name for p in (tmp_path / "d").glob("*.tfrecord")] == [
        "train-00000-of-00003.tfrecord"
    ]
    assert not list((tmp_path / "d").glob("*.tmp-*"))
    assert not (tmp_path / "d" / "manifest.json").exists()


def test_resume_rewrites_only_unfinished_shards(build, tmp_path):
    root, base = build["root"], build["base"]
    out = tmp_path / "resume"
    shutil.copytree(root / "tsv_out", out)
    first = out / "train-00001-of-00003.tfrecord"
    first.unlink()
    Path(f"{first}.done.json").unlink()
    (out / "manifest.json").unlink()
    keep = out / "train-00000-of-00003.tfrecord"
    stamp = keep.stat().st_mtime_ns
    assert cli(*base, "--out", out, "--bottom-up-tsv", root / "feats.tsv") == 0
    assert keep.stat().st_mtime_ns == stamp
    assert shards(out) == shards(root / "det_out")
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["records"] for s in manifest["shards"]] == [3, 3, 0]
    # A rerun of a complete build does nothing; other settings need --overwrite.
    assert cli(*base, "--out", out, "--bottom-up-tsv", root / "feats.tsv") == 0
    with pytest.raises(DataError, match="--overwrite"):
        cli(*base, "--out", out, "--bottom-up-npz", root / "npz")


def test_cli_needs_backbone_weights_with_a_detector(build, tmp_path):
    from kaleido_tf.errors import ConfigError

    with pytest.raises(ConfigError, match="--backbone-weights"):
        cli(*build["base"], "--out", tmp_path, "--detector", build["detector"])
    with pytest.raises(ConfigError, match="only applies with --detector"):
        cli(
            *build["base"],
            "--out",
            tmp_path,
            "--bottom-up-npz",
            build["root"] / "npz",
            "--backbone-weights",
            "none",
        )
