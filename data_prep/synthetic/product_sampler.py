"""Samples synthetic products and writes their Fashion-Gen style text.

A ``ProductSpec`` fixes everything the images of a product show; its description
only states what the renderer draws, so every visible content word is true of
every pose. ``visible_words`` lists the words of a description that have an image
region (see ``catalog.WORD_REGIONS``).
"""

from __future__ import annotations

import dataclasses
import string

import numpy as np

from data_prep.synthetic import catalog
from data_prep.synthetic.catalog import COLOURS, DETAILS, SUBCATEGORIES, WORD_REGIONS

# Probability that one optional detail is present, and the most optional details
# one product gets (keeps descriptions Fashion-Gen sized).
OPTIONAL_DETAIL_PROB = 0.45
MAX_OPTIONAL_DETAILS = 3
# Weights of 1..6 images per product.
POSE_COUNT_WEIGHTS = (0.14, 0.16, 0.18, 0.18, 0.18, 0.16)
# Preferred contrast colours, most classic first.
_CONTRAST_ORDER = (
    "white",
    "black",
    "navy",
    "beige",
    "red",
    "yellow",
    "blue",
    "grey",
    "brown",
    "green",
    "burgundy",
    "pink",
    "orange",
    "olive",
    "purple",
)
# Necklines that have a band the "contrast collar" detail can recolour.
_BANDED_NECKLINES = ("crew", "v", "shirt", "polo")
_RIB_NECK_MATERIALS = ("knit", "jersey", "pique")
_PATTERN_SENTENCES = {
    "striped": (
        "Striped pattern in {c} throughout.",
        "Stripes in {c} throughout.",
        "Horizontal stripes in {c}.",
    ),
    "checked": ("Checked pattern in {c} throughout.", "Checked motif in {c}."),
    "polka-dot": ("Polka dot pattern in {c} throughout.", "Polka dots in {c}."),
}
_PATTERN_NAMES = {"striped": "Striped", "checked": "Checked", "polka-dot": "Polka-Dot"}


@dataclasses.dataclass(frozen=True)
class Detail:
    """One described detail of a product.

    Attributes:
        key: Key of ``catalog.DETAILS``.
        colour: Named colour of the detail, or None when the text names none (the
            renderer then picks an unnamed contrasting shade).
    """

    key: str
    colour: str | None = None


@dataclasses.dataclass(frozen=True)
class ProductSpec:
    """Everything about one synthetic product.

    Attributes:
        product_id: ``input_productID``.
        category, subcategory, department, gender, brand, season, composition:
            Fashion-Gen metadata strings.
        colour: Body colour (key of ``catalog.COLOURS``).
        pattern: One of ``catalog.PATTERNS``.
        details: The described details, in text order.
        msrp_usd: Price.
        name: Product name, e.g. "Red Striped Crewneck Sweater".
        description: Fashion-Gen style description, true of every image.
        num_poses: Number of images (1..6).
        pattern_colour: Colour of the stripes / checks / dots (None when solid).
        sleeves: ``long``, ``short``, ``none``, or "" for items without sleeves.
        neckline: Key of ``catalog.NECKLINE_PHRASES`` or "".
        material: Material phrase used in the text (e.g. "merino wool").
    """

    product_id: int
    category: str
    subcategory: str
    department: str
    gender: str
    brand: str
    season: str
    composition: str
    colour: str
    pattern: str
    details: tuple[Detail, ...]
    msrp_usd: float
    name: str
    description: str
    num_poses: int
    pattern_colour: str | None = None
    sleeves: str = ""
    neckline: str = ""
    material: str = ""

    def has(self, key: str) -> bool:
        """Whether the product has the detail ``key``."""
        return any(d.key == key for d in self.details)

    def detail(self, key: str) -> Detail | None:
        """The detail ``key``, or None."""
        for d in self.details:
            if d.key == key:
                return d
        return None


def description_words(text: str) -> list[str]:
    """Words of a description as word masks are keyed: lower case, split on
    whitespace, leading/trailing punctuation stripped (inner hyphens kept).

    Example:
        >>> description_words("Long sleeve T-shirt in red. V-neck collar.")
        ['long', 'sleeve', 't-shirt', 'in', 'red', 'v-neck', 'collar']
    """
    words = (w.strip(string.punctuation) for w in text.lower().split())
    return [w for w in words if w]


def visible_words(spec: ProductSpec) -> list[str]:
    """Distinct words of ``spec.description`` that name something visible, in
    order of first appearance (the keys of the renderer's word masks)."""
    return list(
        dict.fromkeys(
            w for w in description_words(spec.description) if w in WORD_REGIONS
        )
    )


def contrast_colours(avoid: tuple[str, ...], min_luma_gap: float = 60.0) -> list[str]:
    """Named colours that stand out against every colour in ``avoid``.

    Args:
        avoid: Colour names the result must contrast with.
        min_luma_gap: Least luma difference to each of them.

    Returns:
        Colour names, most classic first (may be empty).
    """
    out = []
    for name in _CONTRAST_ORDER:
        if name in avoid:
            continue
        luma = catalog.luminance(COLOURS[name])
        if all(
            abs(luma - catalog.luminance(COLOURS[a])) >= min_luma_gap for a in avoid
        ):
            out.append(name)
    return out


def _pick_contrast(rng: np.random.Generator, avoid: tuple[str, ...]) -> str:
    cands = contrast_colours(avoid) or contrast_colours(avoid[:1]) or ["white"]
    weights = np.array([1.0 / (1 + 0.6 * i) for i in range(len(cands))])
    return str(cands[int(rng.choice(len(cands), p=weights / weights.sum()))])


def _choice(rng: np.random.Generator, items: tuple[str, ...] | list[str]) -> str:
    return str(items[int(rng.integers(len(items)))])


def _sample_details(
    rng: np.random.Generator,
    sub: catalog.SubcategoryDef,
    sleeves: str,
    neckline: str,
) -> list[str]:
    keys = [_choice(rng, group) for group in sub.required]
    groups = {DETAILS[k].group for k in keys} - {None}
    optional = list(sub.optional)
    rng.shuffle(optional)
    n_opt = 0
    for key in optional:
        if n_opt >= MAX_OPTIONAL_DETAILS or rng.random() >= OPTIONAL_DETAIL_PROB:
            continue
        group = DETAILS[key].group
        if group is not None and group in groups:
            continue
        if key == "ribbed_cuffs" and sleeves == "none":
            continue
        if key == "contrast_collar" and neckline not in _BANDED_NECKLINES:
            continue
        keys.append(key)
        n_opt += 1
        if group is not None:
            groups.add(group)
    # Stable, natural order: the catalog's.
    order = {k: i for i, k in enumerate(DETAILS)}
    return sorted(keys, key=order.__getitem__)


def _detail_sentences(details: tuple[Detail, ...], logo_verb: str) -> list[str]:
    keys = [d.key for d in details]
    out = []
    merged_rib = "ribbed_cuffs" in keys and "ribbed_hem" in keys
    for d in details:
        if merged_rib and d.key == "ribbed_hem":
            continue
        if merged_rib and d.key == "ribbed_cuffs":
            out.append("Ribbed cuffs and hem.")
            continue
        ddef = DETAILS[d.key]
        if d.colour is not None and ddef.colour_phrase is not None:
            text = ddef.colour_phrase.format(colour=d.colour, verb=logo_verb)
        else:
            text = ddef.phrase.format(verb=logo_verb)
        out.append(text)
    return out


def sample_product(rng: np.random.Generator, product_id: int) -> ProductSpec:
    """Draws one product and its text.

    Args:
        rng: Source of randomness (consumed).
        product_id: The product's ``input_productID``.

    Returns:
        A ``ProductSpec`` whose description states only what
        ``garment_renderer.render_product_image`` draws in every pose.
    """
    names = list(SUBCATEGORIES)
    sub = SUBCATEGORIES[names[int(rng.integers(len(names)))]]
    gender = _choice(rng, sub.genders)
    mat_phrase, composition = catalog.MATERIALS[sub.material][
        int(rng.integers(len(catalog.MATERIALS[sub.material])))
    ]
    colour = _choice(rng, sub.colours or tuple(COLOURS))
    pats, weights = zip(*sub.patterns, strict=True)
    w = np.asarray(weights, float)
    pattern = str(pats[int(rng.choice(len(pats), p=w / w.sum()))])
    pattern_colour = None if pattern == "solid" else _pick_contrast(rng, (colour,))
    sleeves = _choice(rng, sub.sleeves) if sub.sleeves else ""
    neckline = _choice(rng, sub.necklines) if sub.necklines else ""

    detail_keys = _sample_details(rng, sub, sleeves, neckline)
    avoid = (colour,) if pattern_colour is None else (colour, pattern_colour)
    details = []
    for key in detail_keys:
        ddef = DETAILS[key]
        named = ddef.colour_mode == "required" or (
            ddef.colour_mode == "optional" and rng.random() < 0.5
        )
        if key == "rubber_sole" and sub.kind == "sneaker":
            # Sneaker soles are white or black, and always named.
            named = True
            d_colour = _choice(rng, ("white", "white", "black"))
            details.append(Detail(key, d_colour))
            continue
        details.append(Detail(key, _pick_contrast(rng, avoid) if named else None))
    details_t = tuple(details)

    # First sentence.
    noun = sub.noun
    if sleeves:
        sleeve_phrase = catalog.SLEEVE_PHRASES[sleeves]
        template = int(rng.integers(3))
        if template == 0 or sleeves == "none":
            first = [f"{sleeve_phrase} {mat_phrase} {noun} in {colour}."]
            if sleeves == "none" and template == 2:
                first = [f"Sleeveless {colour} {mat_phrase} {noun}."]
        elif template == 1:
            first = [
                f"{mat_phrase.capitalize()} {noun} in {colour}.",
                f"{sleeve_phrase.split()[0]} sleeves.",
            ]
        else:
            first = [
                f"{colour.capitalize()} {mat_phrase} {noun} with "
                f"{sleeve_phrase.lower()}s."
            ]
    else:
        template = int(rng.integers(3))
        if template == 0:
            first = [f"{mat_phrase.capitalize()} {noun} in {colour}."]
        elif template == 1:
            first = [f"{colour.capitalize()} {mat_phrase} {noun}."]
        else:
            first = [f"{noun.capitalize()} in {colour} {mat_phrase}."]

    rest: list[str] = []
    if pattern != "solid":
        rest.append(_choice(rng, _PATTERN_SENTENCES[pattern]).format(c=pattern_colour))
    neck_sentences = catalog.NECKLINE_PHRASES.get(neckline, ())
    if neck_sentences:
        if sub.material in _RIB_NECK_MATERIALS:
            neck = _choice(rng, neck_sentences)
        else:
            neck = neck_sentences[0]
        rest.append(neck)
    logo_verb = catalog.LOGO_VERBS.get(sub.material, "embroidered")
    detail_sentences = _detail_sentences(details_t, logo_verb)
    if rng.random() < 0.3 and len(detail_sentences) > 1:
        rng.shuffle(detail_sentences)
    rest.extend(detail_sentences)
    description = " ".join(first + rest)

    pattern_name = _PATTERN_NAMES.get(pattern, "")
    name_parts = [colour.capitalize()]
    if pattern_name:
        name_parts.append(pattern_name)
    name_parts.append(sub.name_noun)
    name = " ".join(name_parts)

    lo, hi = sub.price
    msrp = float(round(float(rng.uniform(lo, hi)) / 5.0) * 5.0)
    pw = np.asarray(POSE_COUNT_WEIGHTS)
    num_poses = int(rng.choice(6, p=pw / pw.sum())) + 1
    brand = _choice(rng, catalog.BRANDS)
    season = _choice(rng, catalog.SEASONS)

    return ProductSpec(
        product_id=int(product_id),
        category=sub.category,
        subcategory=sub.name,
        department=sub.department,
        gender=gender,
        brand=brand,
        season=season,
        composition=composition,
        colour=colour,
        pattern=pattern,
        details=details_t,
        msrp_usd=msrp,
        name=name,
        description=description,
        num_poses=num_poses,
        pattern_colour=pattern_colour,
        sleeves=sleeves,
        neckline=neckline,
        material=mat_phrase,
    )
