"""COCO caption metrics on tiny known cases (one METEOR process for all)."""

import shutil

import pytest

from kaleido_tf.evaluation import captioning_metrics
from kaleido_tf.evaluation.captioning_metrics import (
    METRICS,
    CaptionScorer,
    JavaNotFoundError,
)

REFERENCES = {
    "a": ["Slim-fit jeans in indigo denim. Five-pocket styling. Zip fly."],
    "b": ["Wool beanie in forest green. Ribbed cuff. Logo patch at front."],
}
CLOSE = {
    "a": "Slim-fit jeans in blue denim. Five-pocket styling.",
    "b": "Wool beanie in green. Ribbed cuff at front.",
}
UNRELATED = {"a": "Leather ankle boots with laces.", "b": "Silk dress in red."}


@pytest.mark.java
@pytest.mark.skipif(shutil.which("java") is None, reason="needs a Java runtime")
def test_known_cases_in_order():
    with CaptionScorer() as scorer:
        same = scorer.score(REFERENCES, {k: v[0] for k, v in REFERENCES.items()})
        close = scorer.score(REFERENCES, CLOSE)
        unrelated = scorer.score(REFERENCES, UNRELATED)
    # Identical captions: BLEU-4, METEOR and ROUGE-L are perfect (×100).
    for metric in ("bleu4", "meteor", "rouge_l"):
        assert same[metric] == pytest.approx(100.0, abs=1e-3), metric
    for metric in METRICS:
        assert same[metric] > close[metric] > unrelated[metric] >= 0.0, metric
    for result in (same, close, unrelated):
        assert result["sum_cap"] == pytest.approx(sum(result[m] for m in METRICS))
        assert result["examples"] == 2


def test_missing_java_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(captioning_metrics.shutil, "which", lambda name: None)
    with pytest.raises(JavaNotFoundError, match="need Java") as err:
        captioning_metrics.score(REFERENCES, CLOSE)
    assert "\n" not in str(err.value)


def test_ids_must_agree():
    with pytest.raises(ValueError, match="same ids"):
        captioning_metrics.score(REFERENCES, {"a": "jeans"})
