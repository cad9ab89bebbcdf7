"""Generated documents for the RAG tests: one made-up product per file, with facts to ask about.

Deterministic (seeded): the same `n` gives the same files, names and questions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

_SYLLABLES = (
    "zor", "blax", "quin", "taro", "vel", "mira", "dax", "oru", "pel", "kint", "sab", "rho", "lum", "tesk",
    "gav", "nor", "wix", "yul", "fen", "bri", "cato", "drel", "esk", "frob", "hal", "jun", "kel", "mox",
)  # fmt: skip
_CATEGORIES = (
    "message queue", "photo editor", "weather station", "bicycle lock", "tea kettle", "garden sprinkler",
    "password manager", "3D printer", "coffee grinder", "drone controller", "spreadsheet app", "yoga mat",
    "electric scooter", "sourdough starter kit", "noise-cancelling headphone", "aquarium heater",
    "smart thermostat", "hiking backpack", "video game console", "sewing machine",
)  # fmt: skip
_CITIES = (
    "Lisbon", "Osaka", "Nairobi", "Reykjavik", "Montevideo", "Tallinn", "Cusco", "Hobart", "Tbilisi",
    "Quebec", "Zanzibar", "Bergen", "Valparaiso", "Kyoto", "Marrakesh", "Ushuaia",
)  # fmt: skip
_ANIMALS = (
    "otter", "heron", "lynx", "axolotl", "badger", "pangolin", "ibis", "walrus", "gecko", "marmot",
    "okapi", "puffin", "tapir", "wombat", "narwhal", "quokka",
)  # fmt: skip
_COLORS = ("teal", "amber", "crimson", "olive", "indigo", "saffron", "charcoal", "coral", "mint", "plum")


@dataclass(frozen=True, slots=True)
class Product:
    name: str
    category: str
    city: str
    year: int
    animal: str
    color: str
    capacity: int


def products(n: int, seed: int = 7) -> list[Product]:
    rng = random.Random(seed)
    names: set[str] = set()
    out: list[Product] = []
    while len(out) < n:
        name = "".join(rng.sample(_SYLLABLES, rng.choice((2, 3)))).capitalize()
        if name in names:
            continue
        names.add(name)
        out.append(
            Product(
                name,
                rng.choice(_CATEGORIES),
                rng.choice(_CITIES),
                rng.randint(1990, 2024),
                rng.choice(_ANIMALS),
                rng.choice(_COLORS),
                rng.randint(2, 900),
            )
        )
    return out


def document(p: Product) -> str:
    return (
        f"# {p.name}\n\n"
        f"{p.name} is a {p.category} designed in {p.city} and first sold in {p.year}.\n\n"
        f"## Design\n\n"
        f"The {p.name} {p.category} comes in {p.color}, and its mascot is a {p.animal}. "
        f"Its capacity is rated at {p.capacity} units.\n\n"
        f"## Support\n\n"
        f"Owners of a {p.name} can ask the {p.city} workshop for repairs.\n"
    )


def questions(p: Product) -> list[str]:
    return [
        f"Where was the {p.name} designed?",
        f"What is the mascot of {p.name}?",
        f"Which colour does the {p.name} {p.category} come in?",
    ]


def write_corpus(root: Path, items: list[Product]) -> dict[str, Path]:
    """One markdown file per product, spread over a few sub-folders; name -> path."""
    paths = {}
    for i, p in enumerate(items):
        path = root / f"group{i % 7}" / f"{p.name.lower()}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(document(p), encoding="utf-8")
        paths[p.name] = path
    return paths


def sentences(n: int, seed: int = 11) -> list[str]:
    """Varied short sentences for recall measurements."""
    rng = random.Random(seed)
    verbs = ("repaired", "painted", "sold", "designed", "photographed", "shipped", "tested", "described")
    out = []
    for _ in range(n):
        out.append(
            f"The {rng.choice(_COLORS)} {rng.choice(_CATEGORIES)} was {rng.choice(verbs)} in "
            f"{rng.choice(_CITIES)} by a {rng.choice(_ANIMALS)} in {rng.randint(1900, 2030)}."
        )
    return out
