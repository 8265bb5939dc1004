"""The retrieval SavedModel: a fresh process gives the Keras model's numbers, at any
batch size and text length, from named tensors, a TF Serving REST body or raw text;
``saved_model_cli`` shows what export_info.json and signatures.md document."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from data_prep.text.wordpiece import WordPieceEncoder, read_vocab
from kaleido_tf.export.saved_model_export import (
    EXPORT_INFO_NAME,
    SIGNATURES_DOC_NAME,
    ExportExistsError,
    export_saved_model,
)
from tests.kaleido_tf.export.conftest import keras_outputs, run_in_fresh_process

SIGNATURES = ["retrieval", "retrieval_text", "serving_default", "tokenize"]
NP_DTYPES = {"int32": np.int32, "float32": np.float32, "string": np.str_}


def named_inputs(records, rows, length):
    """The ids-in signature's inputs for ``rows``, cut or padded to ``length``."""
    return {
        "input_ids": records.input_ids[rows, :length],
        "input_mask": records.input_mask[rows, :length],
        "patch_features": records.patch_features[rows],
        "patch_boxes": records.patch_boxes[rows],
    }


def rest_instances_from_docs(export_dir: Path, signature: str, rows_inputs: dict):
    """Fills the documented REST body of ``signature`` with real values.

    Checks each value against the documented ``<dtype [dims]>`` placeholder, then
    returns the request as JSON text, as a client would send it.
    """
    text = (export_dir / SIGNATURES_DOC_NAME).read_text()
    bodies = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]
    (body,) = [b for b in bodies if b["signature_name"] == signature]
    (template,) = body["instances"]
    assert set(template) == set(rows_inputs)
    n = len(next(iter(rows_inputs.values())))
    instances = []
    for i in range(n):
        instance = {}
        for name, placeholder in template.items():
            value = np.asarray(rows_inputs[name][i])
            if not placeholder.startswith("<"):  # an example description
                assert value.dtype.kind == "U" and value.ndim == 0, name
                instance[name] = str(value)
                continue
            dtype, dims = re.fullmatch(r"<(\w+) \[(.*)\]>", placeholder).groups()
            assert value.dtype == NP_DTYPES[dtype], name
            shape = [d.strip() for d in dims.split(",")] if dims else []
            assert len(shape) == value.ndim, name
            for want, got in zip(shape, value.shape):
                assert want == "T" or int(want) == got, (name, shape, value.shape)
            instance[name] = value.tolist()
        instances.append(instance)
    return json.dumps({"signature_name": signature, "instances": instances})


def tf_serving_row_format(body: str, signature) -> dict[str, np.ndarray]:
    """What TF Serving does with a row-format body: stack each named input."""
    request = json.loads(body)
    specs = signature.structured_input_signature[1]
    return {
        name: np.asarray(
            [instance[name] for instance in request["instances"]],
            dtype=spec.dtype.as_numpy_dtype if spec.dtype != tf.string else np.str_,
        )
        for name, spec in specs.items()
    }


@pytest.fixture(scope="module")
def served(retrieval_export, validation_records, tmp_path_factory):
    """Every call of these tests, answered by the export loaded in a new process."""
    records = validation_records
    short = int(records.lengths[:3].max())  # this request's longest text
    full = records.input_ids.shape[1]
    assert short < full, "the records need padding for a variable-length case"
    calls = {
        "short": ("serving_default", named_inputs(records, slice(0, 3), short)),
        "full": ("retrieval", named_inputs(records, slice(0, 5), full)),
        "text": (
            "retrieval_text",
            {
                "description": np.array(records.texts),
                "patch_features": records.patch_features,
                "patch_boxes": records.patch_boxes,
            },
        ),
        "tokenize": ("tokenize", {"description": np.array(records.texts)}),
    }
    rest_rows = slice(3, 8)
    rest_length = int(records.lengths[rest_rows].max())
    body = rest_instances_from_docs(
        retrieval_export.path,
        "retrieval",
        named_inputs(records, rest_rows, rest_length),
    )
    text_body = rest_instances_from_docs(
        retrieval_export.path,
        "retrieval_text",
        {
            "description": np.array(records.texts)[rest_rows],
            "patch_features": records.patch_features[rest_rows],
            "patch_boxes": records.patch_boxes[rest_rows],
        },
    )
    signatures = tf.saved_model.load(str(retrieval_export.path)).signatures
    calls["rest"] = ("retrieval", tf_serving_row_format(body, signatures["retrieval"]))
    calls["rest_text"] = (
        "retrieval_text",
        tf_serving_row_format(text_body, signatures["retrieval_text"]),
    )
    out = run_in_fresh_process(
        retrieval_export.path,
        calls,
        tmp_path_factory.mktemp("fresh"),
        text_ops=True,
    )
    return {"calls": calls, "out": out, "rest_rows": rest_rows}


def assert_matches_keras(trained, inputs, served_out):
    expected = keras_outputs(trained.model, trained.config, inputs)["itm_logits"]
    probability = tf.nn.softmax(expected, axis=-1).numpy()[:, 1]
    np.testing.assert_allclose(served_out["match_logits"], expected, atol=1e-5)
    np.testing.assert_allclose(served_out["match_probability"], probability, atol=1e-5)
    return probability


def test_fresh_process_matches_keras_at_two_batch_sizes_and_lengths(
    served, retrieval_export
):
    out = served["out"]
    assert not out["modules"]["kaleido_tf"], "serving must not need kaleido_tf"
    assert sorted(out["signatures"]["names"]) == SIGNATURES
    probabilities = []
    for call in ("short", "full"):
        _, inputs = served["calls"][call]
        assert out[call]["match_probability"].shape == (len(inputs["input_ids"]),)
        probabilities.append(
            assert_matches_keras(retrieval_export.trained, inputs, out[call])
        )
    # Variable length changes nothing: the 3 records agree at both lengths.
    np.testing.assert_allclose(
        out["short"]["match_probability"],
        out["full"]["match_probability"][:3],
        atol=1e-6,
    )
    assert np.ptp(out["full"]["match_probability"]) > 1e-3, "outputs do not vary"


def test_rest_instances_body_from_the_docs_runs_through_the_signature(
    served, retrieval_export, validation_records
):
    _, inputs = served["calls"]["rest"]
    assert inputs["input_ids"].shape[0] == 5
    rows = served["rest_rows"]
    np.testing.assert_array_equal(
        inputs["patch_features"], validation_records.patch_features[rows]
    )
    assert_matches_keras(retrieval_export.trained, inputs, served["out"]["rest"])
    # The text-in body from the docs: same records, same numbers.
    assert served["calls"]["rest_text"][1]["description"].shape == (5,)
    np.testing.assert_allclose(
        served["out"]["rest_text"]["match_probability"],
        served["out"]["rest"]["match_probability"],
        atol=1e-5,
    )


def test_text_signature_tokenises_as_data_prep_and_scores_the_same(
    served, retrieval_export, validation_records
):
    records = validation_records
    manifest = records.manifest
    encoder = WordPieceEncoder(
        read_vocab(records.folder / manifest["vocab_file"]),
        manifest["max_seq_length"],
        manifest["text"]["lower_case"],
    )
    data_prep_ids, _, _ = encoder.encode(records.texts)
    np.testing.assert_array_equal(data_prep_ids, records.input_ids)  # the fixture
    tokens = served["out"]["tokenize"]
    t = tokens["input_ids"].shape[1]
    assert t == records.lengths.max()
    np.testing.assert_array_equal(tokens["input_ids"], data_prep_ids[:, :t])
    np.testing.assert_array_equal(tokens["input_mask"], records.input_mask[:, :t])
    all_rows = named_inputs(records, slice(None), records.input_ids.shape[1])
    assert_matches_keras(retrieval_export.trained, all_rows, served["out"]["text"])


def parse_saved_model_cli(text: str) -> dict[str, dict[str, dict[str, tuple]]]:
    """signature -> "inputs"/"outputs" -> name -> (dtype, shape) from ``show --all``."""
    found: dict[str, dict[str, dict[str, tuple]]] = {}
    pattern = r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (.+)"
    for block in re.split(r"\nsignature_def\['", text)[1:]:
        name = block.split("'", 1)[0]
        found[name] = {"inputs": {}, "outputs": {}}
        for kind, key, dtype, shape in re.findall(pattern, block):
            found[name][kind][key] = (dtype, shape)
    return found


def test_saved_model_cli_lists_the_documented_signatures(
    retrieval_export, validation_records
):
    cli = Path(sys.executable).with_name("saved_model_cli")
    shown = subprocess.run(
        [str(cli), "show", "--dir", str(retrieval_export.path), "--all"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    listed = parse_saved_model_cli(shown.stdout)
    info = json.loads((retrieval_export.path / EXPORT_INFO_NAME).read_text())
    assert sorted(info["signatures"]) == SIGNATURES
    assert retrieval_export.result.signatures[0] == "serving_default"
    dtypes = {"int32": "DT_INT32", "float32": "DT_FLOAT", "string": "DT_STRING"}
    docs = (retrieval_export.path / SIGNATURES_DOC_NAME).read_text()
    for name, doc in info["signatures"].items():
        assert f"## `{name}`" in docs
        for kind in ("inputs", "outputs"):
            documented = {
                key: (dtypes[t["dtype"]], "(" + ", ".join(map(str, t["shape"])) + ")")
                for key, t in doc[kind].items()
            }
            assert listed[name][kind] == documented, (name, kind)
    p, d = info["patches"]["num_patches"], info["patches"]["feature_dim"]
    assert listed["serving_default"]["inputs"]["patch_features"][1] == (
        f"(-1, {p}, {d})"
    )
    assert set(listed["serving_default"]["outputs"]) == {
        "match_probability",
        "match_logits",
    }
    assert info["checkpoint"] == retrieval_export.trained.checkpoint
    assert info["step"] == 1 and info["task"] == "retrieval"
    asset = retrieval_export.path / info["vocabulary"]["asset"]
    assert asset.read_bytes() == (validation_records.folder / "vocab.txt").read_bytes()


def test_wrong_inputs_raise_clear_errors(retrieval_export, validation_records):
    signature = tf.saved_model.load(str(retrieval_export.path)).signatures["retrieval"]
    good = {
        k: tf.constant(v)
        for k, v in named_inputs(validation_records, slice(0, 2), 10).items()
    }
    assert signature(**good)["match_probability"].shape == (2,)

    def call(**changes):
        return signature(**{**good, **changes})

    # Dtypes and static shapes: TensorFlow's own checks of the signature.
    signature_errors = (TypeError, ValueError, tf.errors.InvalidArgumentError)
    with pytest.raises(signature_errors, match="int32"):
        call(input_ids=tf.cast(good["input_ids"], tf.float32))
    with pytest.raises(signature_errors, match="55"):
        call(patch_features=good["patch_features"][:, :-1])
    with pytest.raises(TypeError, match="patch_boxes"):
        signature(**{k: v for k, v in good.items() if k != "patch_boxes"})
    with pytest.raises(tf.errors.InvalidArgumentError, match="input_mask must have"):
        call(input_mask=good["input_mask"][:, :-1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="patch_features must"):
        call(patch_features=good["patch_features"][:1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_sequence_length"):
        too_long = tf.zeros([2, 25], tf.int32)
        call(input_ids=too_long, input_mask=too_long)


def test_refuses_to_overwrite(retrieval_export, validation_records):
    before = (retrieval_export.path / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(ExportExistsError, match="--overwrite"):
        export_saved_model(
            retrieval_export.trained,
            "retrieval",
            retrieval_export.path,
            validation_records.folder / "vocab.txt",
        )
    assert (retrieval_export.path / "saved_model.pb").stat().st_mtime_ns == before
