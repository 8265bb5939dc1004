"""Strict config loading: unknown keys, coercion by annotation, extends, overrides."""

import dataclasses
from typing import Literal

import pytest

from kaleido_tf.config.data_prep import (
    PixelPrepareConfig,
    PrepareConfig,
    RegionPrepareConfig,
)
from kaleido_tf.config.loader import (
    CONFIG_ROOT,
    load_dataclass,
    resolve_config_path,
)
from kaleido_tf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Inner:
    rate: float = 0.1
    steps: int = 3
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1, 2)


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = "x"
    inner: Inner = dataclasses.field(default_factory=Inner)
    maybe: int | None = None


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_1_1_exponent_string_becomes_float(tmp_path):
    # PyYAML reads "1e-4" as a string; the annotation makes it a float.
    cfg = load_dataclass(Outer, write(tmp_path, "a.yaml", "inner: {rate: 1e-4}\n"))
    assert cfg.inner.rate == pytest.approx(1e-4)
    assert isinstance(cfg.inner.rate, float)


def test_unknown_key_names_file_path_and_suggestion(tmp_path):
    path = write(tmp_path, "a.yaml", "inner: {rte: 0.2}\n")
    with pytest.raises(ConfigError) as e:
        load_dataclass(Outer, path)
    msg = str(e.value)
    assert str(path) in msg and "'inner.rte'" in msg and "rate" in msg


@pytest.mark.parametrize(
    "text, key",
    [
        ("inner: {steps: true}\n", "inner.steps"),  # bool is not a number
        ("inner: {flag: 1}\n", "inner.flag"),  # number is not a bool
        ("inner: {mode: c}\n", "inner.mode"),  # Literal outside its values
        ("inner: {steps: 2.5}\n", "inner.steps"),
        ("inner: {sizes: 3}\n", "inner.sizes"),
        ("inner: 5\n", "inner"),
        ("name: 3\n", "name"),
    ],
)
def test_wrong_types_are_rejected_with_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_dataclass(Outer, write(tmp_path, "a.yaml", text))


def test_extends_merges_deeply_and_overrides_apply_last(tmp_path):
    write(tmp_path, "base.yaml", "name: base\ninner: {rate: 0.5, steps: 7}\n")
    child = write(
        tmp_path, "child.yaml", "extends: base.yaml\ninner: {steps: 9, sizes: [4]}\n"
    )
    cfg = load_dataclass(Outer, child, ["inner.mode=b", "maybe=4"])
    assert cfg == Outer("base", Inner(0.5, 9, False, "b", (4,)), 4)


def test_extends_loop_is_an_error(tmp_path):
    write(tmp_path, "a.yaml", "extends: b.yaml\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_dataclass(Outer, tmp_path / "a.yaml")


def test_bad_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="a.b.c=value"):
        load_dataclass(Outer, None, ["inner.rate"])


def test_cross_field_checks_report_the_section(tmp_path):
    path = write(tmp_path, "a.yaml", "crop: {threshold: 1.5}\n")
    with pytest.raises(ConfigError, match="crop.threshold"):
        load_dataclass(PrepareConfig, path)


# Each data config is one of these: patch layouts (prepare), detector regions
# (prepare-regions), pixels with teacher targets (prepare-pixels, prepare-omni).
DATA_CONFIG_CLASSES = (PrepareConfig, RegionPrepareConfig, PixelPrepareConfig)


def _load_data_config(path):
    errors = []
    for cls in DATA_CONFIG_CLASSES:
        try:
            return load_dataclass(cls, path)
        except ConfigError as e:
            errors.append(str(e))
    raise AssertionError(f"{path.name} loads as no data config: {errors}")


def test_every_shipped_data_config_loads_and_comments_its_values():
    paths = sorted((CONFIG_ROOT / "data").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"fashiongen_kaleido", "fashiongen_grid8"}
    for path in paths:
        _load_data_config(path)
        for line in path.read_text().splitlines():
            if (
                ":" in line
                and not line.lstrip().startswith("#")
                and not line.rstrip().endswith(":")
            ):
                assert "#" in line, f"{path.name}: uncommented value {line!r}"
    kaleido = load_dataclass(
        PrepareConfig, resolve_config_path("fashiongen_kaleido", "data")
    )
    assert kaleido.layout == "kaleido" and kaleido.backbone.name == "resnet50"
    assert kaleido.text.max_seq_length == 64 and kaleido.crop.margin == 0.04
    grid = load_dataclass(
        PrepareConfig, resolve_config_path("fashiongen_grid8", "data")
    )
    assert grid.layout == "grid8" and grid.crop.method == "none"
    assert grid.text.max_seq_length == 448


def test_unknown_config_name_lists_the_available_ones():
    with pytest.raises(ConfigError, match="fashiongen_kaleido"):
        resolve_config_path("no_such_config", "data")


def test_every_shipped_experiment_config_loads_and_comments_its_values():
    # configs/<system>/*.yaml: strict loading catches a key that a refactor dropped.
    import kaleido_tf

    skip = {"data", "align", "_base"}
    paths = sorted(
        p
        for folder in CONFIG_ROOT.iterdir()
        if folder.is_dir() and folder.name not in skip
        for p in folder.glob("*.yaml")
    )
    systems = {p.parent.name for p in paths}
    assert {"kaleido_bert", "fashion_bert", "image_bert"} <= systems
    for path in paths:
        config = kaleido_tf.load_config(str(path))
        assert config.system == path.parent.name, path
        for line in path.read_text().splitlines():
            if (
                ":" in line
                and not line.lstrip().startswith(("#", "- "))
                and not line.rstrip().endswith(":")
            ):
                assert "#" in line, f"{path.name}: uncommented value {line!r}"
