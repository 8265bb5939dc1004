"""CommerceMM's dual-encoder retrieval vs independent numpy computations: list
scores are dot products of ``CommerceMMModel.embeddings``, each distinct item is
embedded once, full-pool ranks match hand-worked examples."""

import json

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.evaluation import dual_encoder as de
from kaleido_tf.evaluation.retrieval_lists import RetrievalLists, build_retrieval_lists
from kaleido_tf.inputs.pixel_records import pixel_dataset
from kaleido_tf.inputs.product_table import ProductTable
from kaleido_tf.manifest import read_manifest
from tests.fixtures import pixel_prepared as fx

TINY = [
    f"commerce_mm.image_size={fx.IMAGE_SIZE}",
    f"commerce_mm.num_clusters={fx.NUM_CLUSTERS}",
    "commerce_mm.max_masked_tokens=4",
    "commerce_mm.image_backbone=vit",
    "commerce_mm.vit_patch_size=16",
    "commerce_mm.vit_hidden_size=16",
    "commerce_mm.vit_num_layers=1",
    "commerce_mm.vit_num_heads=2",
    "commerce_mm.vit_mlp_dim=16",
    "commerce_mm.num_text_layers=1",
    "commerce_mm.projection_dim=8",
    "model.encoder.num_layers=2",
    "model.encoder.hidden_size=16",
    "model.encoder.inner_dim=24",
]


@pytest.fixture(scope="module")
def model():
    return kaleido_tf.build_model(kaleido_tf.load_config("commerce_mm/demo", TINY))


@pytest.fixture(scope="module")
def folders():
    return fx.pixel_prepared()


def _images(data_dir):
    """image_id -> float32 [S, S, 3] in [0, 255], by the shared record parser."""
    out = {}
    for r in pixel_dataset(data_dir, read_manifest(data_dir)).as_numpy_iterator():
        out[r["image_id"].decode()] = np.round(r["image"] * 255.0)
    return out


def test_list_scores_are_dot_products_of_pair_embeddings(model, folders, tmp_path):
    data = folders["pixels"]
    lists = build_retrieval_lists(data, num_queries=4, num_negatives=3, seed=1)
    lists = RetrievalLists.load(lists.save(tmp_path / "lists.json"), data)
    scores, counts = de.score_lists(de.DualEncoder(model), data, lists, batch_size=3)

    table = ProductTable.load(data, read_manifest(data))
    text_of = {int(p): table.input_ids[i] for i, p in enumerate(table.product_ids)}
    images = _images(data)
    for d in ("itr", "tir"):
        pairs = list(lists.pairs(d))
        ids = np.stack([text_of[p.text_product] for p in pairs])
        pixels = np.stack([images[p.image_id] for p in pairs])
        emb = model.embeddings(
            tf.constant(ids, tf.int32),
            tf.constant((ids != table.pad_id).astype(np.int32)),
            tf.constant(pixels, tf.float32),
            training=False,
        )
        expected = np.sum(emb["text"].numpy() * emb["image"].numpy(), -1)
        np.testing.assert_allclose(
            scores[d].reshape(-1), expected, rtol=1e-5, atol=1e-6
        )
    assert counts["pairs"] == 2 * 4 * 4


def test_each_distinct_item_is_embedded_once(model, folders, tmp_path, monkeypatch):
    data = folders["pixels"]
    lists = build_retrieval_lists(data, num_queries=5, num_negatives=4, seed=2)
    rows = {"text": 0, "image": 0}
    enc = model.encoder
    encode_text, encode_image = enc.encode_text, enc.encode_image

    def count_text(x, *args, **kwargs):
        rows["text"] += int(x.shape[0])
        return encode_text(x, *args, **kwargs)

    def count_image(x, *args, **kwargs):
        rows["image"] += int(x.shape[0])
        return encode_image(x, *args, **kwargs)

    monkeypatch.setattr(enc, "encode_text", count_text)
    monkeypatch.setattr(enc, "encode_image", count_image)
    encoder = de.DualEncoder(model, use_tf_function=False)
    scores, counts = de.score_lists(encoder, data, lists, batch_size=4)
    products = {p for q in lists.queries["itr"] for p in q.candidate_products}
    products |= {q.product_id for q in lists.queries["tir"]}
    images = {q.query_id for q in lists.queries["itr"]}
    images |= {c for q in lists.queries["tir"] for c in q.candidate_ids}
    assert rows == {"text": len(products), "image": len(images)}
    assert counts == {"texts": len(products), "images": len(images), "pairs": 50}
    assert scores["itr"].shape == scores["tir"].shape == (5, 5)

    # Full pool: products once through the whole model, titles and views once.
    rows.update(text=0, image=0)
    pool = de.FullPoolSet.load(data, folders["omni"])
    out = de.full_pool_retrieval(encoder, data, pool, batch_size=4)
    n, t, v = len(pool.product_ids), len(pool.title_products), len(pool.view_products)
    assert rows == {"text": n + t, "image": n + v}
    assert out["items_embedded"] == {"products": n, "titles": t, "views": v}


def test_full_pool_ranks_by_hand():
    # 3 products in 2-D; pool vectors chosen so the ranks are easy to read off.
    text = np.array([[1, 0], [0, 1], [0.6, 0.8]])
    image = np.array([[0.9, 0.1], [0.8, 0.6], [0, 1]])
    multimodal = np.array([[1, 0], [0, 1], [-1, 0]])
    title = np.array([[1, 0], [-1, 0.1], [0, 1]])  # products 0, 2, 0
    view = np.array([[0, 1]])  # product 1
    m = de.full_pool_metrics(
        {
            "text": text,
            "image": image,
            "multimodal": multimodal,
            "title": title,
            "view": view,
        },
        {"title": np.array([0, 2, 0]), "view": np.array([1])},
    )
    # t2i: text0 -> image scores (.9, .8, 0): rank 1; text1 -> (.1, .6, 1): image1
    # rank 2; text2 -> (.62, .96, .8): image2 rank 2.
    assert m["t2i"]["rank@1"] == pytest.approx(1 / 3)
    assert m["t2i"]["mean_rank"] == pytest.approx(5 / 3)
    # i2t: image0 -> (.9, .1, .62): 1; image1 -> (.8, .6, .96): 3; image2 ->
    # (0, 1, .8): 2.
    assert m["i2t"]["rank@1"] == pytest.approx(1 / 3)
    assert m["i2t"]["mean_rank"] == pytest.approx(2.0)
    # q2p: title0 -> (1, 0, -1): 1; title1 -> (-1, .1, 1): 1; title2 -> (0, 1, 0):
    # its product 0 scores 0, tied with product 2 and below product 1: rank 3
    # (ties count against the model).
    assert m["q2p"]["rank@1"] == pytest.approx(2 / 3)
    assert m["q2p"]["mean_rank"] == pytest.approx(5 / 3)
    # i2p: view -> multimodal (0, 1, 0): rank 1; i2p_image: (.1, .6, 1): rank 2.
    assert m["i2p"]["rank@1"] == 1.0 and m["i2p_image"]["rank@1"] == 0.0
    assert m["i2p_image"]["mean_rank"] == 2.0
    assert m["meta_average"] == pytest.approx((1 / 3 + 1 / 3 + 2 / 3 + 1 + 0) / 5)
    assert m["skipped"] == []
    json.dumps(m)  # results are plain data


def _save_run(model, config, folder):
    """A run folder as the Trainer writes it: config.yaml and a checkpoint."""
    import yaml

    from kaleido_tf.config.loader import config_to_dict

    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config)))
    tf.train.Checkpoint(model=model).save(str(folder / "checkpoints" / "ckpt"))
    return folder


def test_cli_retrieval_compare_and_full_pool(model, folders, tmp_path, capsys):
    import hashlib

    from kaleido_tf.cli.main import main

    config = kaleido_tf.load_config("commerce_mm/demo", TINY)
    run = _save_run(model, config, tmp_path / "run")
    data, lists_file = folders["pixels"], tmp_path / "lists.json"
    argv = ["evaluate", "build-lists", "--data", str(data), "--out", str(lists_file)]
    assert main([*argv, "--queries", "4", "--negatives", "3", "--quiet"]) == 0
    argv = ["evaluate", "retrieval", "--model-dir", str(run), "--data", str(data)]
    argv += ["--lists", str(lists_file), "--batch-size", "5", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "cmm"), "--label", "CommerceMM"]) == 0
    results = json.loads((tmp_path / "cmm" / "results.json").read_text())
    lists = RetrievalLists.load(lists_file, data)
    scores, _ = de.score_lists(de.DualEncoder(model), data, lists)
    for d in ("itr", "tir"):
        truth = np.array([q.positive for q in lists.queries[d]])
        ranks = 1 + np.sum(scores[d] > scores[d][np.arange(4), truth][:, None], 1)
        for k in (1, 5, 10):  # no ties among float dot products here
            assert results[d][f"rank@{k}"] == pytest.approx(np.mean(ranks <= k))
    assert results["sum_r"] == pytest.approx(
        100 * sum(results[d][f"rank@{k}"] for d in ("itr", "tir") for k in (1, 5, 10))
    )
    digest = hashlib.sha256(lists_file.read_bytes()).hexdigest()
    assert results["lists_sha256"] == digest and results["system"] == "commerce_mm"
    assert results["label"] == "CommerceMM"

    # `compare` puts it beside another system's results on the same lists and
    # refuses results scored on other lists.
    other = dict(results, system="kaleido_bert", label="Kaleido-BERT")
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "results.json").write_text(json.dumps(other))
    argv = ["evaluate", "compare", str(tmp_path / "cmm"), str(tmp_path / "kb")]
    assert main([*argv, "--out", str(tmp_path / "both"), "--quiet"]) == 0
    both = json.loads((tmp_path / "both" / "results.json").read_text())
    assert set(both["runs"]) == {"CommerceMM", "Kaleido-BERT"}
    other["lists_sha256"] = "0" * 64
    (tmp_path / "kb" / "results.json").write_text(json.dumps(other))
    assert main([*argv, "--out", str(tmp_path / "bad"), "--quiet"]) != 0
    capsys.readouterr()

    out = tmp_path / "pool.json"
    argv = ["evaluate", "dual", "--run", str(run), "--data", str(data)]
    argv += ["--omni", str(folders["omni"]), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert "meta average" in capsys.readouterr().out
    pool = json.loads(out.read_text())
    tasks = list(de.FULL_POOL_TASKS)
    assert all(
        pool[t]["candidates"] == pool["items_embedded"]["products"] for t in tasks
    )
    assert pool["meta_average"] == pytest.approx(
        np.mean([pool[t]["rank@1"] for t in tasks])
    )
