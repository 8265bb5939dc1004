"""The command line: fast help, one-line errors, inspect, synth and the demo."""

import json
import os
import subprocess
import sys
from pathlib import Path

from kaleido_tf.cli.main import main

REPO = Path(__file__).resolve().parents[3]


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from kaleido_tf.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow imported for --help'\n"
        "import os; assert os.environ['TF_USE_LEGACY_KERAS'] == '1'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "prepare" in result.stdout and "synth" in result.stdout


def test_inspect_config_shows_resolved_values(capsys):
    assert (
        main(["inspect", "config", "demo_kaleido", "--set", "text.max_seq_length=32"])
        == 0
    )
    out = capsys.readouterr().out
    assert "name: mobilenet_v3_small" in out  # from demo_kaleido.yaml
    assert "margin: 0.04" in out  # inherited through extends
    assert "max_seq_length: 32" in out  # the override


def test_config_errors_exit_2_with_one_line(capsys):
    assert (
        main(["inspect", "config", "demo_kaleido", "--set", "text.max_seq_lenght=3"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "max_seq_length" in err and "\n" not in err


def test_demo_builds_and_describes_both_splits(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--products", "16", "--quiet"]
    argv += ["--validation-products", "6", "--align-steps", "10", "--queries", "4"]
    assert main([*argv, "--pretrain-steps", "4", "--no-export"]) == 0
    printed = capsys.readouterr().out
    for split in ("train", "validation"):
        manifest = json.loads((out / "prepared" / split / "manifest.json").read_text())
        assert manifest["counts"]["images"] >= 1 and manifest["layout"] == "kaleido"
        assert (out / "fashiongen" / f"fashiongen_256_256_{split}.h5").is_file()
        assert f"split '{split}'" in printed
    train = json.loads((out / "prepared" / "train" / "manifest.json").read_text())
    val = json.loads((out / "prepared" / "validation" / "manifest.json").read_text())
    assert val["backbone"]["fingerprint"] == train["backbone"]["fingerprint"]
    assert "given:" in val["vocab_source"]
    pictures = (
        "prepared_samples.png",
        "pretrain/loss_curves.png",
        "alignment_example.png",
    )
    for picture in pictures:
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # AAG ran: both splits record the captioner; zero-shot retrieval was scored.
    assert "alignment" in val and "alignment" in train
    results = json.loads((out / "retrieval" / "results.json").read_text())
    assert results["lists"].endswith("retrieval_lists.json")
    assert 0.0 <= results["itr"]["rank@1"] <= 1.0
    assert "Table 2" in printed
    assert "validation itm_loss" in printed and "before" in printed
    assert (out / "pretrain" / "checkpoints" / "checkpoint").is_file()
    # Too few products to pretrain: a one-line usage error.
    assert main(["demo", "--out", str(out), "--products", "6", "--quiet"]) == 2
    assert "too few" in capsys.readouterr().err


def test_inspect_checkpoint_lists_the_name_map(tmp_path, capsys):
    from tests.fixtures.bert_checkpoint import write_bert_checkpoint

    bert = write_bert_checkpoint(tmp_path / "bert")
    assert (
        main(["inspect", "checkpoint", str(bert), "--config", "kaleido_bert/demo"]) == 0
    )
    out = capsys.readouterr().out
    assert "bert/encoder/layer_1/attention/self/query/kernel" in out
    assert "patch_embedding" in out  # left at random init
