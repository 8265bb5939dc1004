"""Vocabulary of the synthetic Fashion-Gen data set, as plain data.

Everything the sampler may say and the renderer must draw is listed here: the
colours (with their RGB values), patterns, details (each with a fixed location
phrase), materials, brands, and the sub-categories with the silhouette parameters
that make each sub-category recognisable in the picture.

``WORD_REGIONS`` maps every visible content word that a description can contain
(lower-case, as produced by ``product_sampler.description_words``) to the name of
the image region it denotes; the renderer produces one mask per region name.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

# Named colours, RGB. Chosen to be far apart so that the nearest named colour of
# a shaded region is still the colour the text names.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 36, 44),
    "burgundy": (118, 26, 46),
    "pink": (238, 150, 180),
    "orange": (236, 122, 34),
    "yellow": (243, 204, 52),
    "beige": (220, 196, 156),
    "brown": (118, 74, 44),
    "olive": (108, 114, 52),
    "green": (38, 128, 72),
    "blue": (50, 110, 200),
    "navy": (30, 40, 86),
    "purple": (114, 60, 150),
    "black": (30, 30, 32),
    "grey": (134, 134, 138),
    "white": (248, 248, 246),
}

# Colours that are not named in any text (hardware, soles, shadows inside parts).
UNNAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "gold": (206, 168, 82),
    "silver": (166, 169, 178),
    "gum": (176, 120, 62),
    "charcoal": (58, 58, 62),
    "cream": (240, 232, 212),
    "tan": (186, 140, 96),
}

PATTERNS: tuple[str, ...] = ("solid", "striped", "checked", "polka-dot")

DEPARTMENTS: tuple[str, ...] = ("CLOTHING", "BAGS", "ACCESSORIES", "SHOES")
GENDERS: tuple[str, ...] = ("MEN", "WOMEN")
SEASONS: tuple[str, ...] = (
    "SS2015",
    "FW2015",
    "SS2016",
    "FW2016",
    "SS2017",
    "FW2017",
    "SS2018",
)

# Invented brand names; several use latin-1 accented letters on purpose, to
# exercise the latin-1 byte strings of the real files.
BRANDS: tuple[str, ...] = (
    "Maison Lirané",
    "Atelier Boréal",
    "Comme des Rêveurs",
    "Névé Studios",
    "Björnsson & Åkerlund",
    "Casa Peñalver",
    "Château Müller",
    "Hélène Dufresne",
    "Ørsted Works",
    "Rue Saint-Éloi",
    "Inès Barragán",
    "Nordgrey",
    "Kestrel & Finch",
    "Oberon Ward",
    "Paloma Reyes",
    "Studio Halden",
    "Marlowe Row",
    "Tessellate",
    "Quill & Harbour",
    "Fjell Outfitters",
    "Vantage Supply Co.",
)

# Material families: (phrase used in the description, composition string).
MATERIALS: dict[str, tuple[tuple[str, str], ...]] = {
    "knit": (
        ("wool", "100% wool"),
        ("cashmere", "100% cashmere"),
        ("merino wool", "100% merino wool"),
        ("cotton knit", "100% cotton"),
        ("wool-blend knit", "70% wool, 30% polyamide"),
    ),
    "jersey": (
        ("cotton jersey", "100% cotton"),
        ("organic cotton jersey", "100% organic cotton"),
        ("stretch jersey", "95% cotton, 5% elastane"),
    ),
    "pique": (
        ("cotton pique", "100% cotton"),
        ("stretch pique", "96% cotton, 4% elastane"),
    ),
    "poplin": (
        ("cotton poplin", "100% cotton"),
        ("oxford cloth", "100% cotton"),
        ("linen", "100% linen"),
    ),
    "wool_coat": (
        ("wool-blend", "80% wool, 20% polyamide"),
        ("felted wool", "100% wool"),
        ("cashmere-blend", "90% wool, 10% cashmere"),
    ),
    "suiting": (
        ("wool", "100% wool"),
        ("wool twill", "98% wool, 2% elastane"),
        ("linen-blend", "55% linen, 45% cotton"),
    ),
    "nylon": (
        ("nylon", "100% nylon"),
        ("technical", "100% polyester"),
        ("satin", "100% polyester"),
    ),
    "denim": (
        ("denim", "100% cotton"),
        ("stretch denim", "98% cotton, 2% elastane"),
        ("selvedge denim", "100% cotton"),
    ),
    "twill": (
        ("cotton twill", "100% cotton"),
        ("gabardine", "100% wool"),
        ("stretch twill", "97% cotton, 3% elastane"),
    ),
    "fleece": (
        ("french terry", "100% cotton"),
        ("cotton fleece", "80% cotton, 20% polyester"),
    ),
    "crepe": (
        ("crepe", "100% polyester"),
        ("silk", "100% silk"),
        ("viscose", "100% viscose"),
    ),
    "leather": (
        ("leather", "100% leather"),
        ("grained leather", "100% calfskin"),
    ),
    "canvas": (
        ("canvas", "100% cotton"),
        ("coated canvas", "100% cotton, polyurethane coating"),
    ),
    "shoe": (
        ("leather", "Upper: leather. Sole: rubber."),
        ("suede", "Upper: suede. Sole: rubber."),
        ("canvas", "Upper: textile. Sole: rubber."),
    ),
    "boot": (
        ("leather", "Upper: leather. Sole: rubber."),
        ("suede", "Upper: suede. Sole: rubber."),
    ),
    "cap": (
        ("cotton twill", "100% cotton"),
        ("wool", "100% wool"),
    ),
    "hat_knit": (
        ("rib knit", "100% wool"),
        ("wool", "100% merino wool"),
    ),
}

# Texture each material family gets in the picture.
MATERIAL_TEXTURE: dict[str, str] = {
    "knit": "knit",
    "hat_knit": "knit",
    "denim": "denim",
    "leather": "leather",
    "boot": "leather",
    "shoe": "leather",
}

SLEEVE_PHRASES: dict[str, str] = {
    "long": "Long sleeve",
    "short": "Short sleeve",
    "none": "Sleeveless",
}

# Neckline sentences. Variants after the first are used only for knits and
# jerseys, where the renderer draws the band ribbed.
NECKLINE_PHRASES: dict[str, tuple[str, ...]] = {
    "crew": ("Crewneck collar.", "Rib knit crewneck collar."),
    "v": ("V-neck collar.", "Rib knit V-neck collar."),
    "turtle": ("Turtleneck collar.", "Rib knit turtleneck collar."),
    "scoop": ("Scoop neck.",),
    "shirt": ("Spread collar.",),
    "polo": ("Polo collar.", "Rib knit polo collar."),
    "lapel": ("Notched lapel collar.",),
    "rib": (),
}


@dataclasses.dataclass(frozen=True)
class DetailDef:
    """A detail that a description can state and the renderer draws.

    Attributes:
        key: Identifier used by the renderer.
        phrase: Sentence without a colour; ``{verb}`` is replaced by the logo verb.
        colour_phrase: Sentence naming the detail's own colour (``{colour}``), or
            None when the detail cannot have one.
        colour_mode: ``none``, ``optional`` (named about half the time) or
            ``required``.
        group: Details of one group are mutually exclusive (e.g. closures).
    """

    key: str
    phrase: str
    colour_phrase: str | None = None
    colour_mode: str = "none"
    group: str | None = None


def _d(
    key: str,
    phrase: str,
    colour_phrase: str | None = None,
    colour_mode: str = "none",
    group: str | None = None,
) -> tuple[str, DetailDef]:
    if colour_phrase is not None and colour_mode == "none":
        colour_mode = "optional"
    return key, DetailDef(key, phrase, colour_phrase, colour_mode, group)


DETAILS: MappingProxyType[str, DetailDef] = MappingProxyType(
    dict(
        [
            # Upper garments.
            _d("pocket_chest", "Patch pocket at chest.", group="chest_pocket"),
            _d("welt_pocket_chest", "Welt pocket at chest.", group="chest_pocket"),
            _d("flap_pockets_chest", "Flap pockets at chest.", group="chest_pocket"),
            _d(
                "logo_chest",
                "Logo {verb} at chest.",
                "Logo {verb} in {colour} at chest.",
            ),
            _d("ribbed_cuffs", "Ribbed cuffs."),
            _d("ribbed_hem", "Ribbed hem."),
            _d("rib_trims", "Rib knit collar, cuffs, and hem."),
            _d(
                "contrast_collar",
                "Contrast collar.",
                "Contrast collar in {colour}.",
                colour_mode="required",
            ),
            _d("zip_front", "Zip closure at front.", group="closure"),
            _d("buttons_front", "Button closure at front.", group="closure"),
            _d(
                "double_breasted",
                "Double-breasted button closure at front.",
                group="closure",
            ),
            _d("two_button", "Two-button closure at front.", group="closure"),
            _d("placket", "Button placket at collar."),
            _d("pockets_waist", "Patch pockets at waist.", group="waist_pockets"),
            _d("flap_pockets_waist", "Flap pockets at waist.", group="waist_pockets"),
            _d("welt_pockets_waist", "Welt pockets at waist.", group="waist_pockets"),
            _d("sleeve_pocket", "Zip pocket at sleeve."),
            _d("belt_waist", "Belt at waist.", "Belt in {colour} at waist."),
            # Bottoms.
            _d(
                "drawstring_waist",
                "Drawstring at waist.",
                "Drawstring in {colour} at waist.",
            ),
            _d("elastic_waistband", "Elastic waistband."),
            _d("slash_pockets", "Slash pockets at front.", group="front_pockets"),
            _d("curved_pockets", "Curved pockets at front.", group="front_pockets"),
            _d("zip_fly", "Zip fly."),
            _d("rolled_cuffs", "Rolled cuffs."),
            _d("logo_leg", "Logo printed at leg.", "Logo printed in {colour} at leg."),
            _d("pleats", "Knife pleats throughout."),
            # Bags.
            _d(
                "handles",
                "Twin carry handles.",
                "Twin carry handles in {colour}.",
            ),
            _d(
                "logo_patch_front",
                "Logo patch at front.",
                "Logo patch in {colour} at front.",
                group="front_logo",
            ),
            _d("pocket_front", "Patch pocket at front."),
            _d(
                "shoulder_strap",
                "Adjustable shoulder strap.",
                "Adjustable shoulder strap in {colour}.",
            ),
            _d("flap", "Foldover flap at front."),
            _d("carry_handle", "Carry handle at top."),
            _d("zip_pocket_front", "Zip pocket at front."),
            _d("backpack_straps", "Padded shoulder straps."),
            _d("zip_top", "Zip closure at top."),
            _d("wrist_strap", "Detachable wrist strap."),
            # Hats and scarves.
            _d("brim_curved", "Curved brim.", "Curved brim in {colour}."),
            _d(
                "logo_embroidered_front",
                "Logo embroidered at front.",
                "Logo embroidered in {colour} at front.",
                group="front_logo",
            ),
            _d("button_crown", "Button at crown."),
            _d("ribbed_cuff", "Ribbed cuff."),
            _d("pompom", "Pompom at crown.", "Pompom in {colour} at crown."),
            _d("brim_wide", "Wide brim."),
            _d("fringe", "Fringed edges."),
            # Shoes.
            _d("lace_up", "Lace-up closure.", group="closure"),
            _d(
                "rubber_sole",
                "Rubber sole.",
                "Rubber sole in {colour}.",
            ),
            _d("logo_side", "Logo patch at side.", "Logo patch in {colour} at side."),
            _d("heel_tab", "Heel tab.", "Heel tab in {colour}."),
            _d("reinforced_toe", "Reinforced toe."),
            _d("padded_collar", "Padded collar."),
            _d("zip_side", "Zip closure at side.", group="closure"),
            _d("elastic_panels", "Elastic side panels."),
            _d("pull_tab", "Pull tab at heel.", "Pull tab in {colour} at heel."),
            _d("stacked_heel", "Stacked heel."),
        ]
    )
)

# Verb of "Logo {verb} at chest." per material family.
LOGO_VERBS: dict[str, str] = {
    "knit": "embroidered",
    "pique": "embroidered",
    "poplin": "embroidered",
    "jersey": "printed",
}


@dataclasses.dataclass(frozen=True)
class SubcategoryDef:
    """A sub-category: its text, its look, and which details it can have.

    Attributes:
        name: Fashion-Gen sub-category (upper case).
        category: Fashion-Gen category (upper case).
        department: ``CLOTHING``, ``BAGS``, ``ACCESSORIES`` or ``SHOES``.
        kind: Renderer family (``top``, ``dress``, ``pants``, ``skirt``, ``tote``,
            ``shoulder_bag``, ``backpack``, ``pouch``, ``cap``, ``beanie``,
            ``bucket_hat``, ``scarf``, ``sneaker``, ``boot``).
        noun: Noun phrase of the description (``sweater``, ``tote bag``).
        name_noun: Noun phrase of the product name (``Crewneck Sweater``).
        material: Key of ``MATERIALS``.
        genders: Genders it is sold to.
        colours: Allowed body colours (None: all of ``COLOURS``).
        patterns: (pattern, weight) pairs.
        sleeves: Allowed sleeve lengths (``long``, ``short``, ``none``; empty for
            items without sleeves).
        necklines: Allowed necklines (keys of ``NECKLINE_PHRASES``).
        required: Groups of alternatives; one detail of each is always present.
        optional: Details sampled with probability ``detail_prob`` each.
        price: MSRP range in USD.
        shape: Silhouette parameters read by the renderer.
    """

    name: str
    category: str
    department: str
    kind: str
    noun: str
    name_noun: str
    material: str
    genders: tuple[str, ...] = GENDERS
    colours: tuple[str, ...] | None = None
    patterns: tuple[tuple[str, float], ...] = (("solid", 1.0),)
    sleeves: tuple[str, ...] = ()
    necklines: tuple[str, ...] = ()
    required: tuple[tuple[str, ...], ...] = ()
    optional: tuple[str, ...] = ()
    price: tuple[int, int] = (100, 600)
    shape: MappingProxyType[str, Any] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )


_TOP_PATTERNS = (
    ("solid", 0.55),
    ("striped", 0.25),
    ("checked", 0.08),
    ("polka-dot", 0.12),
)
_KNIT_PATTERNS = (("solid", 0.6), ("striped", 0.3), ("checked", 0.1))
_SHIRT_PATTERNS = (
    ("solid", 0.45),
    ("striped", 0.25),
    ("checked", 0.2),
    ("polka-dot", 0.1),
)
_DRESS_PATTERNS = (
    ("solid", 0.55),
    ("striped", 0.15),
    ("checked", 0.1),
    ("polka-dot", 0.2),
)
_TAILORED_PATTERNS = (("solid", 0.85), ("checked", 0.15))
_DENIM_COLOURS = ("blue", "navy", "black", "grey", "white")
_COAT_COLOURS = (
    "black",
    "navy",
    "grey",
    "beige",
    "brown",
    "olive",
    "burgundy",
    "green",
)
_BOOT_COLOURS = ("black", "brown", "beige", "burgundy", "olive", "grey", "navy")
_WOMEN = ("WOMEN",)


def _s(**kwargs: Any) -> SubcategoryDef:
    kwargs["shape"] = MappingProxyType(dict(kwargs.get("shape", {})))
    return SubcategoryDef(**kwargs)


_SUBCATEGORY_LIST: tuple[SubcategoryDef, ...] = (
    # SWEATERS
    _s(
        name="CREWNECKS",
        category="SWEATERS",
        department="CLOTHING",
        kind="top",
        noun="sweater",
        name_noun="Crewneck Sweater",
        material="knit",
        patterns=_KNIT_PATTERNS,
        sleeves=("long",),
        necklines=("crew",),
        optional=(
            "ribbed_cuffs",
            "ribbed_hem",
            "logo_chest",
            "pocket_chest",
            "contrast_collar",
        ),
        price=(150, 750),
        shape={"length": 0.70},
    ),
    _s(
        name="TURTLENECKS",
        category="SWEATERS",
        department="CLOTHING",
        kind="top",
        noun="sweater",
        name_noun="Turtleneck Sweater",
        material="knit",
        patterns=_KNIT_PATTERNS,
        sleeves=("long",),
        necklines=("turtle",),
        optional=("ribbed_cuffs", "ribbed_hem", "logo_chest"),
        price=(180, 850),
        shape={"length": 0.72, "body_w": 0.19},
    ),
    _s(
        name="V-NECKS",
        category="SWEATERS",
        department="CLOTHING",
        kind="top",
        noun="sweater",
        name_noun="V-Neck Sweater",
        material="knit",
        patterns=_KNIT_PATTERNS,
        sleeves=("long",),
        necklines=("v",),
        optional=(
            "ribbed_cuffs",
            "ribbed_hem",
            "logo_chest",
            "pocket_chest",
            "contrast_collar",
        ),
        price=(150, 700),
        shape={"length": 0.70},
    ),
    _s(
        name="CARDIGANS",
        category="SWEATERS",
        department="CLOTHING",
        kind="top",
        noun="cardigan",
        name_noun="Cardigan",
        material="knit",
        patterns=_KNIT_PATTERNS,
        sleeves=("long",),
        necklines=("v",),
        required=(("buttons_front", "zip_front"),),
        optional=("ribbed_cuffs", "ribbed_hem", "pockets_waist", "logo_chest"),
        price=(180, 900),
        shape={"length": 0.72, "v_depth": 0.26},
    ),
    # TOPS
    _s(
        name="T-SHIRTS",
        category="TOPS",
        department="CLOTHING",
        kind="top",
        noun="t-shirt",
        name_noun="T-Shirt",
        material="jersey",
        patterns=_TOP_PATTERNS,
        sleeves=("short",),
        necklines=("crew", "v"),
        optional=("logo_chest", "pocket_chest", "contrast_collar"),
        price=(45, 250),
        shape={"length": 0.68},
    ),
    _s(
        name="LONG SLEEVE T-SHIRTS",
        category="TOPS",
        department="CLOTHING",
        kind="top",
        noun="t-shirt",
        name_noun="Long Sleeve T-Shirt",
        material="jersey",
        patterns=_TOP_PATTERNS,
        sleeves=("long",),
        necklines=("crew",),
        optional=("logo_chest", "pocket_chest", "ribbed_cuffs"),
        price=(60, 280),
        shape={"length": 0.70, "body_w": 0.19},
    ),
    _s(
        name="TANK TOPS",
        category="TOPS",
        department="CLOTHING",
        kind="top",
        noun="tank top",
        name_noun="Tank Top",
        material="jersey",
        patterns=_TOP_PATTERNS,
        sleeves=("none",),
        necklines=("scoop",),
        optional=("logo_chest",),
        price=(35, 180),
        shape={"length": 0.70, "body_w": 0.17},
    ),
    _s(
        name="POLOS",
        category="TOPS",
        department="CLOTHING",
        kind="top",
        noun="polo",
        name_noun="Polo",
        material="pique",
        patterns=_TOP_PATTERNS,
        sleeves=("short",),
        necklines=("polo",),
        required=(("placket",),),
        optional=("logo_chest", "ribbed_cuffs", "contrast_collar"),
        price=(70, 320),
        shape={"length": 0.68},
    ),
    # SHIRTS
    _s(
        name="SHIRTS",
        category="SHIRTS",
        department="CLOTHING",
        kind="top",
        noun="shirt",
        name_noun="Shirt",
        material="poplin",
        patterns=_SHIRT_PATTERNS,
        sleeves=("long",),
        necklines=("shirt",),
        required=(("buttons_front",),),
        optional=("pocket_chest", "logo_chest", "contrast_collar"),
        price=(90, 480),
        shape={"length": 0.76, "body_w": 0.19, "curved_hem": True},
    ),
    _s(
        name="SHORT SLEEVE SHIRTS",
        category="SHIRTS",
        department="CLOTHING",
        kind="top",
        noun="shirt",
        name_noun="Short Sleeve Shirt",
        material="poplin",
        patterns=_SHIRT_PATTERNS,
        sleeves=("short",),
        necklines=("shirt",),
        required=(("buttons_front",),),
        optional=("pocket_chest", "logo_chest", "contrast_collar"),
        price=(80, 400),
        shape={"length": 0.72, "curved_hem": True},
    ),
    # JACKETS & COATS
    _s(
        name="COATS",
        category="JACKETS & COATS",
        department="CLOTHING",
        kind="top",
        noun="coat",
        name_noun="Coat",
        material="wool_coat",
        colours=_COAT_COLOURS,
        patterns=_TAILORED_PATTERNS,
        sleeves=("long",),
        necklines=("lapel",),
        required=(("buttons_front", "double_breasted"),),
        optional=("belt_waist", "flap_pockets_waist"),
        price=(450, 2400),
        shape={
            "length": 1.15,
            "body_w": 0.21,
            "hem_w": 0.25,
            "waist_y": 0.52,
            "v_depth": 0.36,
            "sleeve_len": 0.60,
        },
    ),
    _s(
        name="BOMBERS",
        category="JACKETS & COATS",
        department="CLOTHING",
        kind="top",
        noun="bomber jacket",
        name_noun="Bomber Jacket",
        material="nylon",
        sleeves=("long",),
        necklines=("rib",),
        required=(("rib_trims",), ("zip_front",)),
        optional=("sleeve_pocket", "welt_pockets_waist"),
        price=(250, 1200),
        shape={"length": 0.64, "body_w": 0.22, "hem_w": 0.20, "sleeve_len": 0.54},
    ),
    _s(
        name="DENIM JACKETS",
        category="JACKETS & COATS",
        department="CLOTHING",
        kind="top",
        noun="jacket",
        name_noun="Denim Jacket",
        material="denim",
        colours=("blue", "navy", "black"),
        sleeves=("long",),
        necklines=("shirt",),
        required=(("buttons_front",),),
        optional=("flap_pockets_chest", "welt_pockets_waist"),
        price=(180, 750),
        shape={"length": 0.64, "body_w": 0.21, "hem_band": True},
    ),
    _s(
        name="BLAZERS",
        category="JACKETS & COATS",
        department="CLOTHING",
        kind="top",
        noun="blazer",
        name_noun="Blazer",
        material="suiting",
        colours=_COAT_COLOURS,
        patterns=_TAILORED_PATTERNS,
        sleeves=("long",),
        necklines=("lapel",),
        required=(("two_button",),),
        optional=("flap_pockets_waist", "welt_pocket_chest"),
        price=(400, 1900),
        shape={"length": 0.80, "body_w": 0.20, "waist_y": 0.50, "v_depth": 0.34},
    ),
    # PANTS
    _s(
        name="TROUSERS",
        category="PANTS",
        department="CLOTHING",
        kind="pants",
        noun="trousers",
        name_noun="Trousers",
        material="twill",
        patterns=_TAILORED_PATTERNS,
        optional=("slash_pockets", "zip_fly", "belt_waist"),
        price=(150, 800),
        shape={"leg": "straight"},
    ),
    _s(
        name="SWEATPANTS",
        category="PANTS",
        department="CLOTHING",
        kind="pants",
        noun="sweatpants",
        name_noun="Sweatpants",
        material="fleece",
        required=(("elastic_waistband",),),
        optional=("drawstring_waist", "ribbed_cuffs", "logo_leg"),
        price=(90, 450),
        shape={"leg": "tapered"},
    ),
    _s(
        name="LOUNGE PANTS",
        category="PANTS",
        department="CLOTHING",
        kind="pants",
        noun="lounge pants",
        name_noun="Lounge Pants",
        material="crepe",
        patterns=(("solid", 0.6), ("striped", 0.2), ("checked", 0.2)),
        required=(("elastic_waistband",),),
        optional=("drawstring_waist", "slash_pockets"),
        price=(120, 600),
        shape={"leg": "wide"},
    ),
    # JEANS
    _s(
        name="SKINNY JEANS",
        category="JEANS",
        department="CLOTHING",
        kind="pants",
        noun="jeans",
        name_noun="Skinny Jeans",
        material="denim",
        colours=_DENIM_COLOURS,
        optional=("curved_pockets", "zip_fly", "rolled_cuffs", "belt_waist"),
        price=(120, 550),
        shape={"leg": "skinny", "jeans": True},
    ),
    _s(
        name="WIDE-LEG JEANS",
        category="JEANS",
        department="CLOTHING",
        kind="pants",
        noun="jeans",
        name_noun="Wide-Leg Jeans",
        material="denim",
        colours=_DENIM_COLOURS,
        optional=("curved_pockets", "zip_fly", "rolled_cuffs", "belt_waist"),
        price=(140, 600),
        shape={"leg": "wide", "jeans": True},
    ),
    # SHORTS
    _s(
        name="SHORTS",
        category="SHORTS",
        department="CLOTHING",
        kind="pants",
        noun="shorts",
        name_noun="Shorts",
        material="twill",
        patterns=(("solid", 0.75), ("checked", 0.25)),
        optional=("slash_pockets", "zip_fly", "belt_waist", "rolled_cuffs"),
        price=(80, 400),
        shape={"leg": "shorts"},
    ),
    _s(
        name="SWIM SHORTS",
        category="SHORTS",
        department="CLOTHING",
        kind="pants",
        noun="swim shorts",
        name_noun="Swim Shorts",
        material="nylon",
        genders=("MEN",),
        patterns=(("solid", 0.5), ("striped", 0.25), ("polka-dot", 0.25)),
        required=(("elastic_waistband",),),
        optional=("drawstring_waist", "logo_leg"),
        price=(70, 300),
        shape={"leg": "shorts"},
    ),
    # SKIRTS
    _s(
        name="MINISKIRTS",
        category="SKIRTS",
        department="CLOTHING",
        kind="skirt",
        noun="miniskirt",
        name_noun="Miniskirt",
        material="twill",
        genders=_WOMEN,
        patterns=_DRESS_PATTERNS,
        optional=("buttons_front", "belt_waist", "pocket_front"),
        price=(90, 500),
        shape={"length": 0.42, "hem_w": 0.30},
    ),
    _s(
        name="MIDI SKIRTS",
        category="SKIRTS",
        department="CLOTHING",
        kind="skirt",
        noun="midi skirt",
        name_noun="Midi Skirt",
        material="crepe",
        genders=_WOMEN,
        patterns=_DRESS_PATTERNS,
        optional=("buttons_front", "belt_waist"),
        price=(120, 700),
        shape={"length": 0.80, "hem_w": 0.36},
    ),
    _s(
        name="PLEATED SKIRTS",
        category="SKIRTS",
        department="CLOTHING",
        kind="skirt",
        noun="pleated skirt",
        name_noun="Pleated Skirt",
        material="crepe",
        genders=_WOMEN,
        patterns=(("solid", 0.6), ("checked", 0.25), ("striped", 0.15)),
        required=(("pleats",),),
        optional=("belt_waist", "elastic_waistband"),
        price=(140, 750),
        shape={"length": 0.64, "hem_w": 0.36},
    ),
    # DRESSES
    _s(
        name="SHORT DRESSES",
        category="DRESSES",
        department="CLOTHING",
        kind="dress",
        noun="mini dress",
        name_noun="Mini Dress",
        material="crepe",
        genders=_WOMEN,
        patterns=_DRESS_PATTERNS,
        sleeves=("short", "long"),
        necklines=("crew", "v", "shirt"),
        optional=("belt_waist", "buttons_front", "pocket_chest", "contrast_collar"),
        price=(150, 900),
        shape={"length": 0.95, "hem_w": 0.30},
    ),
    _s(
        name="LONG DRESSES",
        category="DRESSES",
        department="CLOTHING",
        kind="dress",
        noun="maxi dress",
        name_noun="Maxi Dress",
        material="crepe",
        genders=_WOMEN,
        patterns=_DRESS_PATTERNS,
        sleeves=("short", "long"),
        necklines=("crew", "v", "scoop"),
        optional=("belt_waist", "buttons_front"),
        price=(200, 1500),
        shape={"length": 1.42, "hem_w": 0.38},
    ),
    _s(
        name="SLEEVELESS DRESSES",
        category="DRESSES",
        department="CLOTHING",
        kind="dress",
        noun="dress",
        name_noun="Sleeveless Dress",
        material="crepe",
        genders=_WOMEN,
        patterns=_DRESS_PATTERNS,
        sleeves=("none",),
        necklines=("scoop", "v", "crew"),
        optional=("belt_waist", "buttons_front", "pocket_chest"),
        price=(150, 1000),
        shape={"length": 1.05, "hem_w": 0.33},
    ),
    # BAGS
    _s(
        name="TOTE BAGS",
        category="BAGS",
        department="BAGS",
        kind="tote",
        noun="tote bag",
        name_noun="Tote Bag",
        material="canvas",
        patterns=(("solid", 0.8), ("striped", 0.2)),
        required=(("handles",),),
        optional=("logo_patch_front", "pocket_front"),
        price=(90, 900),
    ),
    _s(
        name="SHOULDER BAGS",
        category="BAGS",
        department="BAGS",
        kind="shoulder_bag",
        noun="shoulder bag",
        name_noun="Shoulder Bag",
        material="leather",
        required=(("shoulder_strap",), ("flap",)),
        optional=("logo_patch_front",),
        price=(250, 2500),
    ),
    _s(
        name="BACKPACKS",
        category="BAGS",
        department="BAGS",
        kind="backpack",
        noun="backpack",
        name_noun="Backpack",
        material="nylon",
        required=(("carry_handle",),),
        optional=("zip_pocket_front", "logo_patch_front", "backpack_straps"),
        price=(150, 1400),
    ),
    _s(
        name="POUCHES",
        category="BAGS",
        department="BAGS",
        kind="pouch",
        noun="pouch",
        name_noun="Pouch",
        material="leather",
        required=(("zip_top",),),
        optional=("wrist_strap", "logo_patch_front"),
        price=(90, 700),
    ),
    # HATS
    _s(
        name="CAPS",
        category="HATS",
        department="ACCESSORIES",
        kind="cap",
        noun="baseball cap",
        name_noun="Cap",
        material="cap",
        required=(("brim_curved",),),
        optional=("logo_embroidered_front", "button_crown"),
        price=(45, 300),
    ),
    _s(
        name="BEANIES",
        category="HATS",
        department="ACCESSORIES",
        kind="beanie",
        noun="beanie",
        name_noun="Beanie",
        material="hat_knit",
        patterns=(("solid", 0.7), ("striped", 0.3)),
        required=(("ribbed_cuff",),),
        optional=("pompom", "logo_patch_front"),
        price=(40, 250),
    ),
    _s(
        name="BUCKET HATS",
        category="HATS",
        department="ACCESSORIES",
        kind="bucket_hat",
        noun="bucket hat",
        name_noun="Bucket Hat",
        material="canvas",
        patterns=(("solid", 0.75), ("checked", 0.25)),
        required=(("brim_wide",),),
        optional=("logo_embroidered_front",),
        price=(50, 350),
    ),
    # SCARVES
    _s(
        name="SCARVES",
        category="SCARVES",
        department="ACCESSORIES",
        kind="scarf",
        noun="scarf",
        name_noun="Scarf",
        material="knit",
        patterns=(("solid", 0.3), ("striped", 0.3), ("checked", 0.4)),
        optional=("fringe",),
        price=(60, 600),
    ),
    # SNEAKERS
    _s(
        name="LOW TOP SNEAKERS",
        category="SNEAKERS",
        department="SHOES",
        kind="sneaker",
        noun="low-top sneakers",
        name_noun="Low-Top Sneakers",
        material="shoe",
        required=(("lace_up",), ("rubber_sole",)),
        optional=("logo_side", "heel_tab", "reinforced_toe"),
        price=(90, 700),
        shape={"high": False},
    ),
    _s(
        name="HIGH TOP SNEAKERS",
        category="SNEAKERS",
        department="SHOES",
        kind="sneaker",
        noun="high-top sneakers",
        name_noun="High-Top Sneakers",
        material="shoe",
        required=(("lace_up",), ("rubber_sole",)),
        optional=("logo_side", "heel_tab", "reinforced_toe", "padded_collar"),
        price=(110, 800),
        shape={"high": True},
    ),
    # BOOTS
    _s(
        name="ANKLE BOOTS",
        category="BOOTS",
        department="SHOES",
        kind="boot",
        noun="ankle boots",
        name_noun="Ankle Boots",
        material="boot",
        colours=_BOOT_COLOURS,
        required=(("lace_up", "zip_side"),),
        optional=("stacked_heel", "rubber_sole", "pull_tab"),
        price=(250, 1300),
        shape={"chelsea": False},
    ),
    _s(
        name="CHELSEA BOOTS",
        category="BOOTS",
        department="SHOES",
        kind="boot",
        noun="chelsea boots",
        name_noun="Chelsea Boots",
        material="boot",
        colours=_BOOT_COLOURS,
        required=(("elastic_panels",),),
        optional=("stacked_heel", "pull_tab", "rubber_sole"),
        price=(280, 1400),
        shape={"chelsea": True},
    ),
)

SUBCATEGORIES: MappingProxyType[str, SubcategoryDef] = MappingProxyType(
    {s.name: s for s in _SUBCATEGORY_LIST}
)
CATEGORIES: tuple[str, ...] = tuple(
    dict.fromkeys(s.category for s in _SUBCATEGORY_LIST)
)

# Region names the renderer draws; word -> region. Colour words map to
# "colour:<name>" (the pixels painted in that colour).
_ITEM_NOUNS = (
    "sweater",
    "cardigan",
    "t-shirt",
    "tank",
    "polo",
    "shirt",
    "coat",
    "jacket",
    "bomber",
    "blazer",
    "trousers",
    "sweatpants",
    "pants",
    "jeans",
    "shorts",
    "skirt",
    "miniskirt",
    "dress",
    "bag",
    "tote",
    "backpack",
    "pouch",
    "cap",
    "beanie",
    "hat",
    "scarf",
    "sneakers",
    "boots",
)
_PART_WORDS = {
    "sleeve": "sleeves",
    "sleeves": "sleeves",
    "collar": "collar",
    "neck": "collar",
    "crewneck": "collar",
    "turtleneck": "collar",
    "v-neck": "collar",
    "lapel": "lapels",
    "placket": "placket",
    "button": "buttons",
    "buttons": "buttons",
    "zip": "zip",
    "pocket": "pocket",
    "pockets": "pocket",
    "chest": "chest",
    "logo": "logo",
    "belt": "belt",
    "waist": "waist",
    "waistband": "waistband",
    "drawstring": "drawstring",
    "cuffs": "cuffs",
    "cuff": "cuffs",
    "hem": "hem",
    "ribbed": "ribbed",
    "rib": "ribbed",
    "strap": "strap",
    "straps": "strap",
    "handle": "handles",
    "handles": "handles",
    "flap": "flap",
    "sole": "sole",
    "rubber": "sole",
    "lace-up": "laces",
    "toe": "toe",
    "heel": "heel",
    "tab": "tab",
    "brim": "brim",
    "pompom": "pompom",
    "fringed": "fringe",
    "pleats": "pleats",
    "pleated": "pleats",
    "leg": "legs",
    "elastic": "elastic",
    "panels": "elastic",
    "striped": "fabric",
    "stripes": "fabric",
    "checked": "fabric",
    "polka": "fabric",
    "dot": "fabric",
    "dots": "fabric",
    "pattern": "fabric",
}
WORD_REGIONS: MappingProxyType[str, str] = MappingProxyType(
    {
        **{noun: "item" for noun in _ITEM_NOUNS},
        **_PART_WORDS,
        **{colour: f"colour:{colour}" for colour in COLOURS},
    }
)


def luminance(rgb: tuple[int, int, int]) -> float:
    """Rec. 601 luma of an RGB triple (0..255)."""
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


def nearest_colour(rgb: tuple[float, float, float] | Any) -> str:
    """Name of the catalog colour closest (Euclidean RGB) to ``rgb``."""
    r, g, b = (float(v) for v in rgb)
    return min(
        COLOURS,
        key=lambda n: (
            (COLOURS[n][0] - r) ** 2
            + (COLOURS[n][1] - g) ** 2
            + (COLOURS[n][2] - b) ** 2
        ),
    )
