"""Bottom-up-attention TSV / NPZ files in their real base64 / npz layouts."""

import base64

import numpy as np
import pytest

from data_prep.regions.bottom_up_features import (
    BottomUpNPZ,
    BottomUpTSV,
    write_bottom_up_npz,
    write_bottom_up_tsv,
)
from data_prep.regions.region_records import Detections
from kaleido_tf.errors import DataError

D, C = 12, 5


def b64(array, dtype):
    return base64.b64encode(np.asarray(array, dtype).tobytes()).decode()


def image(seed, n):
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, 20, n)
    boxes = np.stack([x1, x1 / 2, x1 + 9, x1 / 2 + 7], 1).astype(np.float32)
    probs = rng.dirichlet(np.ones(C + 1), n).astype(np.float32)
    return {
        "w": 64 + seed,
        "h": 48,
        "boxes": boxes,
        "features": rng.normal(size=(n, D)).astype(np.float32),
        "cls_prob": probs,
    }


IMAGES = {"100000_1": image(1, 4), "100000_2": image(2, 3), "100007_1": image(3, 1)}


def test_original_seven_column_tsv(tmp_path):
    # generate_tsv.py layout + cls_prob: image_id, image_w, image_h, num_boxes, ...
    lines = [
        "\t".join(
            [
                key,
                str(v["w"]),
                str(v["h"]),
                str(len(v["boxes"])),
                b64(v["boxes"], "<f4"),
                b64(v["features"], "<f4"),
                b64(v["cls_prob"], "<f4"),
            ]
        )
        for key, v in IMAGES.items()
    ]
    path = tmp_path / "feats.tsv"
    path.write_text("\n".join(lines) + "\n")
    with BottomUpTSV([path]) as tsv:
        assert tsv.ids() == list(IMAGES) and "100000_9" not in tsv
        for key in reversed(list(IMAGES)):  # random access
            v, det = IMAGES[key], tsv.get(key)
            assert (det.image_width, det.image_height) == (v["w"], v["h"])
            np.testing.assert_array_equal(det.boxes, v["boxes"])
            np.testing.assert_array_equal(det.features, v["features"])
            np.testing.assert_array_equal(det.class_probs, v["cls_prob"])
            # bottom-up confidence: the largest object-class probability
            np.testing.assert_array_equal(det.scores, v["cls_prob"][:, 1:].max(1))
            assert det.classes is None
        assert len(tsv.describe()["sha256"][0]) == 64


def test_lxmert_ten_column_tsv_and_six_columns(tmp_path):
    v = IMAGES["100000_1"]
    ids, conf = np.array([4, 0, 2, 2]), np.array([0.9, 0.8, 0.5, 0.4], np.float32)
    lxmert = [
        "100000_1",
        str(v["h"]),  # img_h before img_w in LXMERT's order
        str(v["w"]),
        b64(ids, "<i8"),
        b64(conf, "<f4"),
        b64(np.zeros(4), "<i8"),
        b64(np.zeros(4), "<f4"),
        "4",
        b64(v["boxes"], "<f4"),
        b64(v["features"], "<f4"),
    ]
    path = tmp_path / "lxmert.tsv"
    path.write_text("\t".join(lxmert) + "\n")
    det = BottomUpTSV([path]).get("100000_1")
    assert (det.image_width, det.image_height) == (v["w"], v["h"])
    assert det.classes.tolist() == ids.tolist()
    np.testing.assert_array_equal(det.scores, conf)
    six = tmp_path / "six.tsv"
    six.write_text("\t".join(["a", "10", "20", "4", lxmert[8], lxmert[9]]) + "\n")
    det = BottomUpTSV([six]).get("a")
    assert det.scores.tolist() == [1.0] * 4 and det.class_probs is None


def test_writer_round_trip_with_and_without_class_scores(tmp_path):
    dets = {
        k: Detections(
            v["boxes"],
            v["cls_prob"][:, 1:].max(1) * 0.5,
            v["features"],
            v["w"],
            v["h"],
            class_probs=v["cls_prob"],
        )
        for k, v in IMAGES.items()
    }
    path = tmp_path / "out.tsv"
    assert write_bottom_up_tsv(path, dets.items()) == 3
    tsv = BottomUpTSV([path])
    for k, want in dets.items():
        got = tsv.get(k)
        for key in ("boxes", "scores", "features", "class_probs"):
            np.testing.assert_array_equal(getattr(got, key), getattr(want, key))
        assert got.classes.tolist() == want.class_probs[:, 1:].argmax(1).tolist()
    labels_only = {
        k: Detections(
            d.boxes,
            d.scores,
            d.features,
            d.image_width,
            d.image_height,
            classes=np.arange(d.num_boxes) % C,
        )
        for k, d in dets.items()
    }
    write_bottom_up_tsv(path, labels_only.items())
    assert len(path.read_text().splitlines()[0].split("\t")) == 10  # LXMERT, no header
    got = BottomUpTSV([path]).get("100000_2")
    assert got.classes.tolist() == [0, 1, 2] and got.class_probs is None
    bad = {"x": dets["100000_1"]}
    bad["x"] = Detections(**{**bad["x"].__dict__, "classes": np.zeros(4, int) + 9})
    with pytest.raises(DataError, match="argmax"):
        write_bottom_up_tsv(tmp_path / "bad.tsv", bad.items())
    assert not (tmp_path / "bad.tsv").exists() and not list(tmp_path.glob("*.tmp-*"))


def test_malformed_files(tmp_path):
    v = IMAGES["100000_2"]
    cells = ["k", "64", "48", "3", b64(v["boxes"], "<f4"), b64(v["features"], "<f4")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("\t".join(cells[:4] + ["@@not base64@@", cells[5]]) + "\n")
    with pytest.raises(DataError, match="not valid base64"):
        BottomUpTSV([bad]).get("k")
    short = tmp_path / "short.tsv"
    short.write_text("\t".join(cells[:3] + ["5"] + cells[4:]) + "\n")
    with pytest.raises(DataError, match="expected 5 x 4"):
        BottomUpTSV([short]).get("k")
    dup = tmp_path / "dup.tsv"
    dup.write_text("\t".join(cells) + "\n" + "\t".join(cells) + "\n")
    with pytest.raises(DataError, match="appears twice"):
        BottomUpTSV([dup])
    odd = tmp_path / "odd.tsv"
    odd.write_text("a\tb\tc\n")
    with pytest.raises(DataError, match="3 columns"):
        BottomUpTSV([odd])


def test_npz_upstream_layout_and_writer(tmp_path):
    v = IMAGES["100000_1"]
    info = {
        "objects_id": np.array([1, 2, 3, 4]),
        "objects_conf": np.float32([0.9, 0.7, 0.6, 0.2]),
    }
    # bottom-up-attention.pytorch: x, bbox, num_bbox, image_h, image_w, info (pickled)
    np.savez_compressed(
        tmp_path / "100000_1.npz",
        x=v["features"],
        bbox=v["boxes"],
        num_bbox=4,
        image_h=v["h"],
        image_w=v["w"],
        info=info,
    )
    source = BottomUpNPZ(tmp_path)
    det = source.get("100000_1")
    np.testing.assert_array_equal(det.features, v["features"])
    np.testing.assert_array_equal(det.boxes, v["boxes"])
    assert det.classes.tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(det.scores, info["objects_conf"])
    with pytest.raises(DataError, match="pickle"):
        BottomUpNPZ(tmp_path, allow_pickle=False).get("100000_1")
    with pytest.raises(DataError, match="no NPZ features"):
        source.get("100000_3")
    want = Detections(
        v["boxes"],
        np.float32([4, 3, 2, 1]),
        v["features"],
        v["w"],
        v["h"],
        class_probs=v["cls_prob"],
    )
    write_bottom_up_npz(tmp_path / "mine", "img_a", want)
    got = BottomUpNPZ(tmp_path / "mine").get("img_a")
    for key in ("boxes", "scores", "features", "class_probs"):
        np.testing.assert_array_equal(getattr(got, key), getattr(want, key))
