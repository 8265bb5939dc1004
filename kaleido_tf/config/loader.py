"""Strict YAML -> frozen dataclass loading (STYLE.md §2.6).

A file may name a parent with ``extends: <relative path>``; maps merge deeply and
lists are replaced. ``--set a.b.c=value`` overrides are applied last. Values are
coerced by each field's annotation (``1e-4`` read by PyYAML as a string becomes a
float); a bool is never accepted as a number nor a number as a bool; a ``Literal``
accepts only its listed values. Unknown keys are errors that name the file, the
dotted key and the closest valid names.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from kaleido_tf.errors import ConfigError

CONFIG_ROOT = Path(__file__).resolve().parent.parent.parent / "configs"

T = TypeVar("T")


def resolve_config_path(name_or_path: str | Path, group: str) -> Path:
    """Finds a config by path, or by name under ``configs/<group>/``.

    Args:
        name_or_path: A path to a YAML file, or a bare name such as
            ``fashiongen_kaleido`` looked up as ``configs/<group>/<name>.yaml``.
        group: The sub-folder of ``configs/`` searched for bare names.

    Raises:
        ConfigError: Neither exists; the message lists the names available.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = CONFIG_ROOT / group / f"{name_or_path}.yaml"
    if not candidate.is_file() and path.suffix != ".yaml":
        candidate = CONFIG_ROOT / group / f"{name_or_path}"
    if candidate.is_file():
        return candidate
    folder = CONFIG_ROOT / group
    names = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    raise ConfigError(
        f"config {str(name_or_path)!r} is neither a file nor a name in {folder}: "
        f"give a YAML path or one of {names}"
    )


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: 'extends' loops back to itself via {chain}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, found {type(data)}")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: 'extends' must be a relative path string")
    base = _read_yaml(path.parent / parent, chain + (path,))
    return _deep_merge(base, data)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _apply_override(data: dict[str, Any], override: str) -> None:
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} is not of the form a.b.c=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def load_dataclass(
    cls: type[T],
    path: str | Path | None = None,
    overrides: typing.Sequence[str] = (),
) -> T:
    """Reads a YAML file (or only overrides) strictly into the dataclass ``cls``.

    Args:
        cls: A (frozen) dataclass type whose fields define the valid keys.
        path: YAML file; ``None`` starts from the dataclass defaults.
        overrides: ``a.b.c=value`` strings, applied after the file.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: Unreadable file, unknown key, wrong type or failed check.
    """
    source = str(path) if path is not None else "<defaults>"
    data = _read_yaml(Path(path)) if path is not None else {}
    for override in overrides:
        _apply_override(data, override)
        source = f"{source} (with --set overrides)"
    return _build(cls, data, source, "")


def _build(cls: type[T], data: Any, source: str, prefix: str) -> T:
    where = prefix.rstrip(".") or "<top level>"
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: key {where!r}: expected a mapping for {cls.__name__}, "
            f"found {type(data).__name__} {data!r}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(fields), n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise ConfigError(
            f"{source}: unknown key {prefix + str(key)!r}{hint} "
            f"(valid keys here: {sorted(fields)})"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, source, prefix + name)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{source}: {where}: {e}") from None


def _coerce(annotation: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)

    def fail(expected: str) -> typing.NoReturn:
        raise ConfigError(
            f"{source}: key {key!r}: expected {expected}, "
            f"found {type(value).__name__} {value!r}"
        )

    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, source, key + ".")
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            fail(f"one of {list(args)}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(inner[0], value, source, key)
        for candidate in inner:
            try:
                return _coerce(candidate, value, source, key)
            except ConfigError:
                continue
        fail(" or ".join(getattr(a, "__name__", str(a)) for a in inner))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            fail("a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(
                _coerce(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value)
            )
        if len(args) != len(value):
            fail(f"a list of {len(args)} values")
        return tuple(
            _coerce(a, v, source, f"{key}[{i}]")
            for i, (a, v) in enumerate(zip(args, value))
        )
    if annotation is bool:
        if not isinstance(value, bool):
            fail("true or false")
        return value
    if annotation is int:
        if isinstance(value, bool):
            fail("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                as_float = float(value)
            except ValueError:
                fail("an integer")
            if as_float.is_integer():
                return int(as_float)
        fail("an integer")
    if annotation is float:
        if isinstance(value, bool):
            fail("a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                fail("a number")
        fail("a number")
    if annotation is str:
        if not isinstance(value, str):
            fail("a string")
        return value
    raise ConfigError(f"{source}: key {key!r}: unsupported field type {annotation}")


def config_to_dict(config: Any) -> dict[str, Any]:
    """The plain-data form of a config dataclass (for manifests and run records)."""
    out = dataclasses.asdict(config)

    def listify(v: Any) -> Any:
        if isinstance(v, tuple):
            return [listify(x) for x in v]
        if isinstance(v, dict):
            return {k: listify(x) for k, x in v.items()}
        return v

    return listify(out)
