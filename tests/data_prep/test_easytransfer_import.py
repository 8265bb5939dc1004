"""import-easytransfer: round trips of tiny TSVs in every released schema."""

import json

import numpy as np
import pytest

from data_prep.readers.easytransfer_tsv import SCHEMAS
from kaleido_tf.cli.main import main
from kaleido_tf.inputs.parse import record_dataset
from kaleido_tf.inputs.product_table import ProductTable
from kaleido_tf.manifest import read_manifest
from tests.fixtures import easytransfer_tsv as et

D, T = 8, 12


@pytest.fixture(scope="module")
def catalog():
    return et.Catalog(num_products=4, images=2, d=D, t=T)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return et.write_vocab(tmp_path_factory.mktemp("vocab") / "vocab.txt")


def run_import(schema, source, out, vocab, *extra):
    argv = ["import-easytransfer", "--schema", schema, "--in", str(source)]
    argv += ["--out", str(out), "--vocab", str(vocab), "--quiet", *extra]
    return main(argv)


def records(folder):
    manifest = read_manifest(folder)
    rows = [
        {k: v.numpy() for k, v in r.items()} for r in record_dataset(folder, manifest)
    ]
    return manifest, rows


def test_fashionbert_pretrain_round_trip_through_a_list_csv(catalog, vocab, tmp_path):
    rows = et.fashionbert_pretrain(catalog)
    et.write_rows(tmp_path / "part-0.tsv", rows[:9])
    et.write_rows(tmp_path / "part-1.tsv", rows[9:])
    listing = tmp_path / "train.list_csv"
    listing.write_text(f"{len(rows)}\npart-0.tsv\npart-1.tsv\n")
    out = tmp_path / "out"
    assert (
        run_import(
            "fashionbert-pretrain", listing, out, vocab, "--records-per-shard", "3"
        )
        == 0
    )
    manifest, recs = records(out)
    assert manifest["layout"] == "grid8" and manifest["feature_dim"] == D
    assert manifest["max_seq_length"] == T
    assert manifest["counts"]["rows"] == 16
    assert manifest["counts"]["skipped_mismatched_rows"] == 8
    assert len(manifest["shards"]) == 3  # 8 images, 3 per shard
    assert len(recs) == 8
    for i, rec in enumerate(recs):  # row order: product i // 2, image i % 2
        prod = catalog.products[i // 2]
        np.testing.assert_allclose(
            rec["patch_features"], prod["grid"][i % 2], rtol=1e-3, atol=1e-3
        )
        ids = rec["input_ids"][: len(prod["ids"])]
        np.testing.assert_array_equal(ids, prod["ids"])  # [MASK]s restored
        assert rec["input_ids"][len(prod["ids"]) :].sum() == 0
    # Both images of a product share its (hashed) product id.
    assert recs[0]["product_id"] == recs[1]["product_id"] != recs[2]["product_id"]
    table = ProductTable.load(out)
    assert table.num_products == 4
    # The FashionBERT pipeline trains on the imported folder.
    from kaleido_tf.inputs.fashion_bert_pipeline import build_fashion_bert_dataset

    batch = next(iter(build_fashion_bert_dataset(out, 4, max_masked_tokens=4)))
    assert batch["patch_features"].shape == (4, 64, D)


def test_fashionbert_eval_keeps_each_positive_image_once(catalog, vocab, tmp_path):
    source = et.write_rows(tmp_path / "eval.tsv", et.fashionbert_eval(catalog))
    out = tmp_path / "out"
    assert run_import("fashionbert-eval", source, out, vocab) == 0
    manifest, recs = records(out)
    assert manifest["split"] == "validation"
    assert manifest["counts"]["skipped_mismatched_rows"] == 12
    ids = [r["image_id"].decode() for r in recs]
    assert ids == [f"{p['id']}_1" for p in catalog.products]
    for rec, prod in zip(recs, catalog.products):
        assert rec["product_id"] == int(prod["id"])
        np.testing.assert_allclose(rec["patch_features"], prod["grid"][0], atol=1e-3)


@pytest.mark.parametrize("camouflage_width", [45, 35])
def test_kaleido_finetune_with_both_camouflage_box_widths(
    catalog, vocab, tmp_path, camouflage_width
):
    rows = et.kaleido_finetune(catalog, camouflage_width)
    source = et.write_rows(tmp_path / "ft.tsv", rows)
    out = tmp_path / "out"
    assert run_import("kaleido-finetune", source, out, vocab) == 0
    manifest, recs = records(out)
    assert manifest["layout"] == "kaleido" and len(recs) == 8
    recomputed = manifest["counts"]["camouflage_boxes_recomputed"]
    assert recomputed == (8 if camouflage_width == 35 else 0)
    expected_boxes = np.concatenate(
        [b.reshape(-1, 5) for b in et.kaleido_boxes(45)]
    ).astype(np.float32)
    for i, rec in enumerate(recs):
        prod = catalog.products[i // 2]
        # The 35-wide column gives the same 9 level-3 boxes, recomputed from level 1.
        np.testing.assert_array_equal(rec["patch_boxes"], expected_boxes)
        np.testing.assert_allclose(
            rec["patch_features"], prod["kaleido"][i % 2], atol=1e-3
        )
        assert rec["category_id"] == (i // 2) % 2
        assert rec["pose_index"] == i % 2 + 1
    cats = json.loads((out / "categories.json").read_text())
    assert cats["category"] == ["DRESSES", "JEANS"]


def test_kaleido_retrieve_and_pretrain(catalog, vocab, tmp_path):
    source = et.write_rows(tmp_path / "r.tsv", et.kaleido_retrieve(catalog))
    assert run_import("kaleido-retrieve", source, tmp_path / "r", vocab) == 0
    _, recs = records(tmp_path / "r")
    assert len(recs) == 4
    source = et.write_rows(tmp_path / "p.tsv", et.kaleido_pretrain(catalog))
    assert run_import("kaleido-pretrain", source, tmp_path / "p", vocab) == 0
    manifest, recs = records(tmp_path / "p")
    assert manifest["pretext_transforms_in_features"]
    assert manifest["counts"]["restored_grey_cells"] == 16
    for i, rec in enumerate(recs):
        prod = catalog.products[i // 2]
        # The greyed level-4 cells are restored from img_grey_mask_gt.
        np.testing.assert_allclose(
            rec["patch_features"], prod["kaleido"][i % 2], atol=1e-3
        )
        np.testing.assert_array_equal(rec["input_ids"][: len(prod["ids"])], prod["ids"])


def corrupt(rows, row, column, value):
    rows = [list(r) for r in rows]
    rows[row][column] = value
    return rows


@pytest.mark.parametrize(
    "column, value, message",
    [
        (2, "1,2", "column 3 (masked_patch_positions) has 2 values"),
        (
            3,
            "4,7,x1,5,0,0,0,0,0,0,0,0",
            "column 4 (input_ids) holds 'x1', not a number",
        ),
        (9, "1\t0", "11 tab-separated columns"),
    ],
)
def test_malformed_row_names_file_row_and_column_and_writes_nothing(
    catalog, vocab, tmp_path, capsys, column, value, message
):
    rows = corrupt(et.fashionbert_pretrain(catalog), 5, column, value)
    source = et.write_rows(tmp_path / "bad.tsv", rows)
    out = tmp_path / "out"
    assert run_import("fashionbert-pretrain", source, out, vocab) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: bad.tsv:6: ") and message in err
    assert len(err.splitlines()) == 1
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [source]  # no temporary folder left


def test_camouflage_column_of_another_width_is_rejected(
    catalog, vocab, tmp_path, capsys
):
    rows = et.kaleido_finetune(catalog)
    names = [c.name for c in SCHEMAS["kaleido-finetune"]]
    cam = names.index("img_loc_position_camouflage")
    rows = corrupt(rows, 2, cam, ",".join(["1"] * 40))
    source = et.write_rows(tmp_path / "ft.tsv", rows)
    assert run_import("kaleido-finetune", source, tmp_path / "o", vocab) == 1
    err = capsys.readouterr().err
    assert "ft.tsv:3: column" in err and "img_loc_position_camouflage" in err
    assert "35 or 45" in err


def test_existing_output_needs_overwrite(catalog, vocab, tmp_path, capsys):
    source = et.write_rows(tmp_path / "eval.tsv", et.fashionbert_eval(catalog))
    (tmp_path / "out").mkdir()
    assert run_import("fashionbert-eval", source, tmp_path / "out", vocab) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (
        run_import("fashionbert-eval", source, tmp_path / "out", vocab, "--overwrite")
        == 0
    )
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_first_row_fixes_the_sizes_and_must_fit_the_schema(
    catalog, vocab, tmp_path, capsys
):
    rows = corrupt(et.fashionbert_pretrain(catalog), 0, 0, ",".join(["0.5"] * 100))
    source = et.write_rows(tmp_path / "bad.tsv", rows)
    assert run_import("fashionbert-pretrain", source, tmp_path / "o", vocab) == 1
    err = capsys.readouterr().err
    assert "bad.tsv:1: column 1 (image_feature) has 100 values" in err
    assert "a positive multiple of 64" in err
