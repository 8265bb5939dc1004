"""``kaleido-tf export``: a run folder to a SavedModel; refusals before any work."""

from __future__ import annotations

import argparse
import json

import pytest

from kaleido_tf.cli import export
from kaleido_tf.errors import ConfigError
from kaleido_tf.export.saved_model_export import ExportExistsError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kaleido-tf")
    sub = p.add_subparsers(dest="command")
    export.add_parser(sub)
    return p


def test_export_command(tiny_pretrain_run, synthetic_prepared, tmp_path, capsys):
    data = synthetic_prepared["train"]
    out = tmp_path / "models" / "kaleido" / "1"
    argv = ["export", "--model-dir", str(tiny_pretrain_run), "--task", "retrieval"]
    argv += ["--data", str(data), "--out", str(out)]
    assert export.run(parser().parse_args(argv)) == 0
    printed = capsys.readouterr().out
    assert f"to {out}" in printed
    assert f"saved_model_cli show --dir {out} --all" in printed
    assert (out / "saved_model.pb").is_file()
    assert (out / "assets" / "vocab.txt").read_bytes() == (
        data / "vocab.txt"
    ).read_bytes()
    info = json.loads((out / "export_info.json").read_text())
    manifest = json.loads((data / "manifest.json").read_text())
    assert info["checkpoint"].endswith("ckpt-4") and info["step"] == 4
    assert info["vocabulary"]["max_seq_length"] == manifest["max_seq_length"]
    assert info["vocabulary"]["lower_case"] == manifest["text"]["lower_case"]
    assert sorted(info["signatures"]) == ["retrieval", "serving_default"]
    assert "signature_name" in (out / "signatures.md").read_text()

    with pytest.raises(ExportExistsError, match="--overwrite") as refused:
        export.run(parser().parse_args(argv))
    assert refused.value.exit_code == 2
    earlier = str(tiny_pretrain_run / "checkpoints" / "ckpt-2")
    category = argv + ["--overwrite", "--checkpoint", earlier, "--task", "category"]
    with pytest.raises(ConfigError, match="no head 'category'"):
        export.run(parser().parse_args(category))
    assert json.loads((out / "export_info.json").read_text())["step"] == 4  # kept


def test_unknown_task_is_a_usage_error(tmp_path, capsys):
    argv = ["export", "--model-dir", str(tmp_path), "--task", "translation"]
    argv += ["--data", str(tmp_path), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit):
        parser().parse_args(argv)
    assert "invalid choice: 'translation'" in capsys.readouterr().err
