"""Migrating from EasyTransfer: released TSV + checkpoint -> evaluate, end to end."""

import json

from kaleido_tf.cli.main import main
from tests.fixtures import easytransfer_checkpoint as fx
from tests.fixtures import easytransfer_tsv as et

TINY = [
    "model.encoder.vocab_size=40",
    "model.encoder.hidden_size=12",
    "model.encoder.num_attention_heads=2",
    "model.encoder.inner_dim=20",
    "model.encoder.num_layers=2",
    "model.encoder.max_sequence_length=16",
    "model.patch_feature_dim=8",
]


def test_released_files_and_checkpoint_to_retrieval_results(tmp_path):
    cat = et.Catalog(num_products=8, images=1, d=8, t=12)
    vocab = et.write_vocab(tmp_path / "vocab.txt")
    rows = et.fashionbert_eval(cat)
    source = et.write_rows(tmp_path / "fashionbert_eval_txt2img.tsv", rows)
    prefix = fx.write_release_checkpoint(
        tmp_path / "fashionbert_pretrain_model_fin",
        fx.fashion_bert_arrays(vocab_size=40),
        "model.ckpt-54198",
        fx.FASHION_SCOPE,
        config=fx.easytransfer_config("imagebert", vocab_size=40),
    )
    data, run, lists = tmp_path / "data", tmp_path / "run", tmp_path / "lists.json"
    argv = ["import-easytransfer", "--schema", "fashionbert-eval", "--in"]
    assert main([*argv, str(source), "--out", str(data), "--vocab", str(vocab)]) == 0
    argv = ["import-easytransfer", "--checkpoint", str(prefix), "--out", str(run)]
    argv += ["--config", "fashion_bert/pretrain_released"]
    for s in TINY:
        argv += ["--set", s]
    assert main(argv) == 0
    argv = ["evaluate", "build-lists", "--data", str(data), "--out", str(lists)]
    assert main([*argv, "--queries", "8", "--negatives", "5", "--quiet"]) == 0
    argv = ["evaluate", "retrieval", "--model-dir", str(run), "--data", str(data)]
    out = tmp_path / "results"
    assert main([*argv, "--lists", str(lists), "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["system"] == "fashion_bert" and results["step"] == 0
    for direction in ("itr", "tir"):
        assert results[direction]["queries"] == 8
        assert 0.0 <= results[direction]["rank@1"] <= 1.0


def test_missing_flags_are_a_usage_error(tmp_path, capsys):
    assert main(["import-easytransfer", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--schema, --in, --vocab" in err and "--checkpoint" in err
    code = main(["import-easytransfer", "--checkpoint", "c", "--out", "x"])
    assert code == 2 and "--config" in capsys.readouterr().err
