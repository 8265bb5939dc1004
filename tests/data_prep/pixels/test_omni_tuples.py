"""``prepare-omni``: counts per kind, presence flags, grey images, same product."""

import argparse

import numpy as np
import pytest

from kaleido_tf import schema
from kaleido_tf.cli import prepare_omni
from kaleido_tf.inputs.pixel_records import pixel_dataset
from kaleido_tf.manifest import read_manifest
from tests.fixtures.fashiongen_h5 import default_products, write_fashiongen_h5

CONFIG = (
    "layout: pixels224\n"
    "crop: {method: background_difference, output_size: 32}\n"
    "text: {max_seq_length: 12, demo_vocab_size: 200}\n"
    "output: {records_per_shard: 2}\n"
)


def cli(*argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    prepare_omni.add_parser(sub).add_argument("--quiet", action="store_true")
    args = parser.parse_args(["prepare-omni", *map(str, argv), "--quiet"])
    args.argv = ["prepare-omni", *map(str, argv)]
    return prepare_omni.run(args)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("omni")
    chosen = [default_products()[i] for i in (0, 1, 2, 3, 4)]  # 1-4 views, one empty
    h5 = write_fashiongen_h5(root / "fg_train.h5", chosen)
    config = root / "c.yaml"
    config.write_text(CONFIG)
    out = root / "omni"
    assert cli("--h5", h5, "--config", config, "--out", out) == 0
    manifest = read_manifest(out)
    recs = [{k: v.numpy() for k, v in r.items()} for r in pixel_dataset(out, manifest)]
    return chosen, manifest, recs, (h5, config, out)


def test_counts_per_kind(built):
    chosen, manifest, recs, _ = built
    kept = [p for p in chosen if p["description"]]
    counts = manifest["counts"]
    assert counts["view_to_product"] == sum(p["poses"] - 1 for p in kept) == 6
    assert counts["title_to_product"] == len(kept) == 4
    assert counts["tuples"] == len(recs) == 10
    kinds = [schema.OMNI_KINDS[r["kind"]] for r in recs]
    assert (
        kinds.count("view_to_product") == 6 and manifest["layout"] == "omni_tuples224"
    )


def test_flags_grey_images_and_same_product(built):
    chosen, manifest, recs, _ = built
    by_id = {p["product_id"]: p for p in chosen}
    cls = recs[0]["tgt_input_ids"][0]
    for r in recs:
        p = by_id[int(r["product_id"])]
        assert r["tgt_has_image"] == 1 and r["tgt_has_text"] == 1
        assert r["tgt_pose_index"] == 1
        assert r["tgt_input_ids"][0] == cls and r["tgt_input_mask"].sum() > 2
        if schema.OMNI_KINDS[r["kind"]] == "view_to_product":
            assert (r["src_has_image"], r["src_has_text"]) == (1, 0)
            assert 2 <= r["src_pose_index"] <= p["poses"]
            # Missing text = [CLS] [SEP] only.
            assert r["src_input_mask"].sum() == 2 and r["src_input_ids"][0] == cls
            # The source view is the product's colour, shifted by its pose.
            colour = np.asarray(p["colour"]) / 255.0
            centre = r["src_image"][14:18, 14:18].reshape(-1, 3).mean(0)
            np.testing.assert_allclose(centre, colour, atol=0.06)
        else:
            assert (r["src_has_image"], r["src_has_text"]) == (0, 1)
            assert r["src_pose_index"] == 0
            np.testing.assert_allclose(r["src_image"], 128 / 255.0, atol=1.5 / 255)
            assert r["src_input_mask"].sum() > 2  # "item <id>" title
        # Target image = the product's main view (its colour at the centre).
        colour = np.asarray(p["colour"]) / 255.0
        centre = r["tgt_image"][14:18, 14:18].reshape(-1, 3).mean(0)
        np.testing.assert_allclose(centre, colour, atol=0.06)


def test_resume(built):
    _, manifest, _, (h5, config, out) = built
    shards = {p.name: p.read_bytes() for p in out.glob("*.tfrecord")}
    victim = sorted(shards)[0]
    (out / victim).unlink()
    (out / f"{victim}.done.json").unlink()
    (out / "manifest.json").unlink()
    assert cli("--h5", h5, "--config", config, "--out", out) == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.tfrecord")} == shards
    assert read_manifest(out)["counts"]["tuples"] == manifest["counts"]["tuples"]
