"""`kaleido-tf evaluate category|captioning` on fine-tuned runs."""

import json

import numpy as np
import pytest

from kaleido_tf.checkpoints.trained_model import load_trained_model
from kaleido_tf.cli.main import main
from kaleido_tf.errors import ConfigError
from tests.kaleido_tf.cli.test_evaluate import one_line_error, run

SHORT = [
    "train.global_batch_size=8",
    "train.max_steps=2",
    "train.checkpoint_every_steps=2",
    "train.log_every_steps=2",
]


@pytest.fixture(scope="module")
def finetuned(tiny_pretrain_run, synthetic_prepared, tmp_path_factory):
    root = tmp_path_factory.mktemp("finetuned")
    extra = {
        "category": [],
        "captioning": [
            "finetune.captioning.max_caption_tokens=6",
            "finetune.captioning.beam_size=2",
        ],
    }
    for task, settings in extra.items():
        argv = ["finetune", "--task", task, "--quiet"]
        argv += ["--data", str(synthetic_prepared["train"])]
        argv += ["--model-dir", str(root / task), "--init-from", str(tiny_pretrain_run)]
        for s in SHORT + settings:
            argv += ["--set", s]
        assert main(argv) == 0
    return root


def test_category_results_match_an_independent_count(
    finetuned, synthetic_prepared, tmp_path, capsys
):
    validation = synthetic_prepared["validation"]
    out = tmp_path / "cr"
    argv = ["category", "--model-dir", str(finetuned / "category")]
    assert run(argv + ["--data", str(validation), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    # Independent: the model's argmax on each clean record, one at a time.
    import kaleido_tf  # noqa: F401
    from kaleido_tf.inputs.pipeline import build_pretrain_dataset

    trained = load_trained_model(finetuned / "category")
    correct = total = 0
    for batch in build_pretrain_dataset(
        validation, 1, tasks=(), training=False, extra_keys=("category_id",)
    ):
        label = int(batch["category_id"][0])
        if label < 0:
            continue
        logits = trained.model(batch, training=False)["category_logits"].numpy()
        correct += int(np.argmax(logits[0]) == label)
        total += 1
    assert results["examples"] == total
    assert results["category"]["accuracy"] == pytest.approx(correct / total)
    printed = capsys.readouterr().out
    assert "3.CR" in printed and "95.07%" in printed
    assert f"{100 * correct / total:.2f}%" in printed


def test_captioning_writes_captions_and_scores(finetuned, synthetic_prepared, tmp_path):
    out = tmp_path / "fc"
    argv = ["captioning", "--model-dir", str(finetuned / "captioning")]
    argv += ["--data", str(synthetic_prepared["validation"]), "--out", str(out)]
    assert run(argv + ["--max-images", "3"]) == 0
    rows = [
        json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 3
    assert all(len(r["caption"].split()) <= 6 and r["reference"] for r in rows)
    scores = json.loads((out / "results.json").read_text())["captioning"]
    names = ("bleu4", "meteor", "rouge_l", "cider")
    assert scores["sum_cap"] == pytest.approx(sum(scores[k] for k in names))


def test_wrong_kind_of_run_is_one_line(
    finetuned, tiny_pretrain_run, synthetic_prepared, tmp_path
):
    data = str(synthetic_prepared["validation"])
    message = one_line_error(
        [
            "category",
            "--model-dir",
            str(tiny_pretrain_run),
            "--data",
            data,
            "--out",
            str(tmp_path),
        ],
        ConfigError,
    )
    assert "pretraining run" in message
    message = one_line_error(
        [
            "captioning",
            "--model-dir",
            str(finetuned / "category"),
            "--data",
            data,
            "--out",
            str(tmp_path),
        ],
        ConfigError,
    )
    assert "category run" in message
