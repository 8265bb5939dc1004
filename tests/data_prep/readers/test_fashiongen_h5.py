"""The streaming Fashion-Gen reader on the real layout, and its errors."""

import h5py
import numpy as np
import pytest

from data_prep.readers.fashiongen_h5 import FashionGenReader, decode_text
from kaleido_tf.errors import DataError
from tests.fixtures.fashiongen_h5 import default_products, write_fashiongen_h5


def test_products_group_contiguous_rows_and_decode_latin1(fashiongen_h5):
    spec = default_products()
    with FashionGenReader(fashiongen_h5) as reader:
        assert reader.num_rows == sum(p["poses"] for p in spec)
        assert reader.image_shape == (64, 64, 3)
        products = reader.products()
    assert [p.product_id for p in products] == [p["product_id"] for p in spec]
    row = 0
    for got, want in zip(products, spec):
        assert got.rows == tuple(range(row, row + want["poses"]))
        row += want["poses"]
        assert got.category == want["category"].decode()
    assert (
        products[2].text == "Leather tote bag in black by Maison Kitsuné. Twin handles."
    )
    # Stored as UTF-8 (not latin-1): repaired, not mojibake.
    assert products[5].text == "Wool coat in navy by Acné — notched lapel."
    assert products[5].text_repaired
    # Control character replaced by a space, whitespace collapsed.
    assert products[3].text == "Crewneck t-shirt in green. Logo printed at chest."
    assert products[3].text_repaired and not products[0].text_repaired
    assert products[4].text == ""


def test_iter_images_streams_the_requested_rows(fashiongen_h5):
    with FashionGenReader(fashiongen_h5) as reader, h5py.File(fashiongen_h5) as f:
        got = list(reader.iter_images(3, 11, chunk=3))
        assert [r for r, _ in got] == list(range(3, 11))
        for r, image in got:
            np.testing.assert_array_equal(image, f["input_image"][r])


def test_decode_text_cases():
    assert decode_text("Garçon".encode("latin-1") + b"\x00\x00") == ("Garçon", False)
    assert decode_text("Garçon".encode("utf-8")) == ("Garçon", True)
    assert decode_text(b"a\x1b  b ") == ("a b", True)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"drop_keys": ("input_productID",)}, "missing key 'input_productID'"),
        ({"drop_keys": ("input_description",)}, "missing key 'input_description'"),
        ({"image_dtype": "float32"}, "dtype float32, expected uint8"),
    ],
)
def test_bad_layouts_fail_with_file_and_key(tmp_path, kwargs, message):
    path = write_fashiongen_h5(tmp_path / "bad.h5", default_products(), **kwargs)
    with pytest.raises(DataError, match=message) as e:
        FashionGenReader(path)
    assert str(path) in str(e.value)


def test_wrong_image_shape(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["input_image"] = np.zeros((2, 3, 8, 8), np.uint8)  # channels first
        for key in ("input_productID", "input_category", "input_subcategory"):
            f[key] = np.zeros((2, 1), np.int64 if "ID" in key else "S3")
        f["input_description"] = np.zeros((2, 1), "S3")
    with pytest.raises(
        DataError, match=r"shape \(2, 3, 8, 8\), expected \(N, H, W, 3\)"
    ):
        FashionGenReader(path)


def test_column_length_mismatch(tmp_path):
    path = write_fashiongen_h5(tmp_path / "bad.h5", default_products())
    with h5py.File(path, "a") as f:
        del f["input_category"]
        f["input_category"] = np.zeros((3, 1), "S4")
    with pytest.raises(DataError, match="key 'input_category' has shape"):
        FashionGenReader(path)


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"this is not hdf5" * 10)
    with pytest.raises(DataError, match="cannot be read as HDF5"):
        FashionGenReader(junk)
    with pytest.raises(DataError, match="no such file"):
        FashionGenReader(tmp_path / "absent.h5")
