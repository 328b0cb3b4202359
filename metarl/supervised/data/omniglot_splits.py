"""Omniglot class splits as facts encoded in the package.

The Vinyals et al. (2016) split, as distributed with Prototypical Networks (Snell et al. 2017,
``data/omniglot/splits/vinyals``): 1028 train, 172 val and 423 test characters, each used with 4 rotations as
separate classes. Every alphabet lies wholly in one part except Gurmukhi, whose characters 1-41 are in train and
42-45 in test. Train takes 25 background and 8 evaluation alphabets, val 5 background alphabets and test the
remaining 12 evaluation alphabets plus the end of Gurmukhi. Entries are ``(alphabet, first, last)`` character
numbers, in the order of the reference files, so :func:`vinyals_characters` reproduces them line for line.
"""

from __future__ import annotations

from metarl.errors import UserError

VINYALS_SPLITS: dict[str, tuple[tuple[str, int, int], ...]] = {
    "train": (
        ("Angelic", 1, 20),
        ("Grantha", 1, 43),
        ("N_Ko", 1, 33),
        ("Aurek-Besh", 1, 26),
        ("Japanese_(hiragana)", 1, 52),
        ("Malay_(Jawi_-_Arabic)", 1, 40),
        ("Asomtavruli_(Georgian)", 1, 40),
        ("Sanskrit", 1, 42),
        ("Ojibwe_(Canadian_Aboriginal_Syllabics)", 1, 14),
        ("Korean", 1, 40),
        ("Arcadian", 1, 26),
        ("Greek", 1, 24),
        ("Alphabet_of_the_Magi", 1, 20),
        ("Blackfoot_(Canadian_Aboriginal_Syllabics)", 1, 14),
        ("Futurama", 1, 26),
        ("Gurmukhi", 1, 41),
        ("Tagalog", 1, 17),
        ("Anglo-Saxon_Futhorc", 1, 29),
        ("Braille", 1, 26),
        ("Cyrillic", 1, 33),
        ("Burmese_(Myanmar)", 1, 34),
        ("Avesta", 1, 26),
        ("Gujarati", 1, 48),
        ("Ge_ez", 1, 26),
        ("Syriac_(Estrangelo)", 1, 23),
        ("Atlantean", 1, 26),
        ("Japanese_(katakana)", 1, 47),
        ("Balinese", 1, 24),
        ("Atemayar_Qelisayer", 1, 26),
        ("Glagolitic", 1, 45),
        ("Tifinagh", 1, 55),
        ("Latin", 1, 26),
        ("Inuktitut_(Canadian_Aboriginal_Syllabics)", 1, 16),
    ),
    "val": (
        ("Hebrew", 1, 22),
        ("Mkhedruli_(Georgian)", 1, 41),
        ("Armenian", 1, 41),
        ("Early_Aramaic", 1, 22),
        ("Bengali", 1, 46),
    ),
    "test": (
        ("Gurmukhi", 42, 45),
        ("Kannada", 1, 41),
        ("Keble", 1, 26),
        ("Malayalam", 1, 47),
        ("Manipuri", 1, 40),
        ("Mongolian", 1, 30),
        ("Old_Church_Slavonic_(Cyrillic)", 1, 45),
        ("Oriya", 1, 46),
        ("Syriac_(Serto)", 1, 23),
        ("Sylheti", 1, 28),
        ("Tengwar", 1, 25),
        ("Tibetan", 1, 42),
        ("ULOG", 1, 26),
    ),
}
VINYALS_SPLITS["trainval"] = VINYALS_SPLITS["train"] + VINYALS_SPLITS["val"]

# Which official zips hold each part's alphabets ("background" = images_background.zip, ...).
VINYALS_SOURCES: dict[str, tuple[str, ...]] = {
    "train": ("background", "evaluation"),
    "val": ("background",),
    "test": ("evaluation",),
    "trainval": ("background", "evaluation"),
}
VINYALS_CHARACTER_COUNTS = {"train": 1028, "val": 172, "test": 423, "trainval": 1200}


def vinyals_characters(split: str) -> list[str]:
    """The characters of a Vinyals split part as ``"Alphabet/characterNN"``, in the reference order."""
    if split not in VINYALS_SPLITS:
        raise UserError(f"unknown Vinyals split {split!r}; choose one of {sorted(VINYALS_SPLITS)}")
    return [
        f"{alphabet}/character{n:02d}"
        for alphabet, first, last in VINYALS_SPLITS[split]
        for n in range(first, last + 1)
    ]
