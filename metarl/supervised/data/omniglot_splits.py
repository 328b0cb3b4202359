"""Omniglot class splits as facts encoded in the package.

The Vinyals et al. (2016) split, as distributed with Prototypical Networks (Snell et al. 2017,
``data/omniglot/splits/vinyals``): 1028 train, 172 val and 423 test characters, each used with 4 rotations as
separate classes. Every alphabet lies wholly in one part except Gurmukhi, whose characters 1-41 are in train and
42-45 in test. Train takes 25 background and 8 evaluation alphabets, val 5 background alphabets and test the
remaining 12 evaluation alphabets plus the end of Gurmukhi. Entries are ``(alphabet, first, last)`` character
numbers, in the order of the reference files, so :func:`vinyals_characters` reproduces them line for line.

The Finn et al. (2017) split (:func:`finn_characters`) is a seeded shuffle of all characters, irrespective of alphabet.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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


# Finn et al. (2017)'s split, as their code (cbfinn/maml ``data_generator.py``) and learn2learn's MAML example make
# it: all 1623 characters shuffled irrespective of alphabet, the first 1100 to train, the next 100 to validate and the
# last 423 to test, so test characters come from alphabets seen in training. Their permutation depends on the order
# ``os.listdir`` returns, which no file system fixes; ours is a seeded permutation of the sorted characters: the same
# sizes and the same kind of split, not the same characters.
FINN_SPLITS: dict[str, tuple[int, int]] = {
    "train": (0, 1100),
    "val": (1100, 1200),
    "trainval": (0, 1200),
    "test": (1200, 1623),
}
FINN_SEED = 1
OMNIGLOT_CHARACTERS = 1623


def finn_characters(split: str, characters: Sequence[str]) -> list[str]:
    """The characters of a part of the Finn et al. split, from all of Omniglot's ``"Alphabet/characterNN"``."""
    if split not in FINN_SPLITS:
        raise UserError(
            f"unknown split {split!r} for split_scheme='finn'; choose one of {sorted(FINN_SPLITS)}"
        )
    order = sorted(set(characters))
    if len(order) != OMNIGLOT_CHARACTERS:
        raise UserError(
            f"the Finn et al. split needs all {OMNIGLOT_CHARACTERS} Omniglot characters, found {len(order)}: "
            "use the official images_background.zip and images_evaluation.zip (download=True)"
        )
    permutation = np.random.default_rng(FINN_SEED).permutation(len(order))
    start, stop = FINN_SPLITS[split]
    return [order[i] for i in permutation[start:stop]]
