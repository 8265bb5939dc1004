"""``LoadReport``: what a checkpoint load assigned, ignored and left at random init."""

from __future__ import annotations

import dataclasses
import json
import re

_LAYER = re.compile(r"layer_(\d+)/")


@dataclasses.dataclass
class LoadReport:
    """The outcome of loading a foreign checkpoint into a model (STYLE §2.9, 3).

    Nothing is skipped silently: every model variable is either in ``loaded`` or in
    ``random_init``, and every checkpoint variable is either a value of ``loaded``,
    in ``unused`` or in ``ignored``.

    Attributes:
        source: The checkpoint prefix read, e.g. ``.../bert_model.ckpt``.
        model: The model's name.
        loaded: Model variable name -> checkpoint variable name it was set from
            (names without the ``:0`` suffix), in name-map order.
        transforms: Model variable name -> how the checkpoint value was changed on
            the way (reshape, row slice, transpose, class swap); absent = copied.
        unused: Checkpoint variables (model weights, not optimizer state) that no
            model variable took.
        ignored: Checkpoint optimizer state that is never loaded (Adam slots
            ``*/adam_m``, ``*/adam_v``, ``global_step``).
        random_init: Model variables the checkpoint did not set; they keep their
            initialiser's values.
        notes: Sentences on anything a reader should know (truncated tables, label
            swaps, optional groups missing from the checkpoint).
    """

    source: str
    model: str
    loaded: dict[str, str] = dataclasses.field(default_factory=dict)
    transforms: dict[str, str] = dataclasses.field(default_factory=dict)
    unused: list[str] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)
    random_init: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def format(self, verbose: bool = False) -> str:
        """A readable multi-line summary.

        Args:
            verbose: List every loaded variable and every ignored optimizer slot.
                By default, loaded variables that differ only in their encoder
                layer index are folded into one line (``layer_{0..11}``) and the
                optimizer state is counted, not listed.

        Returns:
            The text, without a trailing newline.
        """
        lines = [f"checkpoint {self.source} -> model {self.model}"]
        lines.append(f"loaded {len(self.loaded)} variables:")
        rows = list(self.loaded.items())
        for target, source in rows if verbose else _fold_layers(rows):
            how = self.transforms.get(_unfold(target))
            lines.append(f"  {target} <- {source}" + (f"  ({how})" if how else ""))
        lines.append(f"left at random init {len(self.random_init)} variables:")
        lines += [f"  {name}" for name in self.random_init] or ["  (none)"]
        lines.append(f"unused checkpoint variables {len(self.unused)}:")
        lines += [f"  {name}" for name in self.unused] or ["  (none)"]
        if verbose:
            lines.append(f"ignored optimizer state {len(self.ignored)}:")
            lines += [f"  {name}" for name in self.ignored] or ["  (none)"]
        else:
            kinds = sorted({name.rsplit("/", 1)[-1] for name in self.ignored})
            lines.append(
                f"ignored optimizer state: {len(self.ignored)} variables"
                + (f" ({', '.join(kinds)})" if kinds else "")
            )
        if self.notes:
            lines.append("notes:")
            lines += [f"  - {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The report as plain data (every list in full)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The report as indented JSON (every list in full)."""
        return json.dumps(self.to_dict(), indent=2)


def _fold_layers(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # Folds rows that differ only in the layer index into one "layer_{a..b}" row.
    groups: dict[tuple[str, str], list[int]] = {}
    order: list[tuple[str, str]] = []
    for target, source in rows:
        t_idx, s_idx = _LAYER.findall(target), _LAYER.findall(source)
        if len(t_idx) != 1 or t_idx != s_idx:
            order.append((target, source))
            continue
        key = (_LAYER.sub("layer_{i}/", target), _LAYER.sub("layer_{i}/", source))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(int(t_idx[0]))
    folded = []
    for target, source in order:
        indices = groups.get((target, source))
        if indices is None:
            folded.append((target, source))
            continue
        if len(indices) == 1:
            span = str(indices[0])
        elif sorted(indices) == list(range(min(indices), max(indices) + 1)):
            span = f"{{{min(indices)}..{max(indices)}}}"
        else:
            span = "{" + ",".join(map(str, indices)) + "}"
        folded.append((target.replace("{i}", span), source.replace("{i}", span)))
    return folded


def _unfold(target: str) -> str:
    # A folded name's transform is that of its first layer.
    match = re.search(r"layer_\{(\d+)[^}]*\}/", target)
    if not match:
        return target
    return target[: match.start()] + f"layer_{match.group(1)}/" + target[match.end() :]
