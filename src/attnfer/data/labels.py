"""One label space for every dataset.

attnfer's canonical expression order is FERPlus' (neutral, happiness, surprise, sadness, anger, disgust, fear,
contempt). Every loader maps its dataset's native codes through an explicit table below; class indices are
positions in the dataset variant's class list, which is always a sub-sequence of the canonical order.

The native orders are the single biggest source of silent bugs in FER code (spec datasets.md 3.1):

=========  ====================================================================================
RAF-DB     1 surprise, 2 fear, 3 disgust, 4 happiness, 5 sadness, 6 anger, 7 neutral
FER2013    0 anger, 1 disgust, 2 fear, 3 happiness, 4 sadness, 5 surprise, 6 neutral
FERPlus    vote columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt,
           unknown, NF
AffectNet  0 neutral, 1 happiness, 2 sadness, 3 surprise, 4 fear, 5 disgust, 6 anger, 7 contempt,
           8 none, 9 uncertain, 10 no-face
CK+        0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise
BU-3DFE    name codes: AN anger, DI disgust, FE fear, HA happiness, NE neutral, SA sadness,
           SU surprise (``F0001_AN01WH_F2D.bmp``; neutral has intensity 00; no contempt)
=========  ====================================================================================
"""

from __future__ import annotations

__all__ = [
    "AFFECTNET_CODES",
    "BASIC7",
    "BU3DFE_CODES",
    "CANONICAL",
    "CKPLUS_CODES",
    "FER2013_CODES",
    "FERPLUS_VOTE_COLUMNS",
    "RAFDB_CODES",
    "class_index",
    "normalize_name",
]

CANONICAL: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)
#: the 7 classes of RAF-DB / FER2013 / AffectNet-7 (canonical order, no contempt)
BASIC7: tuple[str, ...] = CANONICAL[:7]

RAFDB_CODES: dict[int, str] = {
    1: "surprise",
    2: "fear",
    3: "disgust",
    4: "happiness",
    5: "sadness",
    6: "anger",
    7: "neutral",
}
FER2013_CODES: dict[int, str] = {
    0: "anger",
    1: "disgust",
    2: "fear",
    3: "happiness",
    4: "sadness",
    5: "surprise",
    6: "neutral",
}
FERPLUS_VOTE_COLUMNS: tuple[str, ...] = (*CANONICAL, "unknown", "NF")
AFFECTNET_CODES: dict[int, str] = {
    0: "neutral",
    1: "happiness",
    2: "sadness",
    3: "surprise",
    4: "fear",
    5: "disgust",
    6: "anger",
    7: "contempt",
}
AFFECTNET_DROPPED: dict[int, str] = {8: "none", 9: "uncertain", 10: "no-face"}
CKPLUS_CODES: dict[int, str] = {
    0: "neutral",
    1: "anger",
    2: "contempt",
    3: "disgust",
    4: "fear",
    5: "happiness",
    6: "sadness",
    7: "surprise",
}
#: BU-3DFE's two-letter expression codes, as they appear in its file names
BU3DFE_CODES: dict[str, str] = {
    "AN": "anger",
    "DI": "disgust",
    "FE": "fear",
    "HA": "happiness",
    "NE": "neutral",
    "SA": "sadness",
    "SU": "surprise",
}

_ALIASES = {
    "happy": "happiness",
    "sad": "sadness",
    "angry": "anger",
    "surprised": "surprise",
    "fearful": "fear",
    "disgusted": "disgust",
    "contemptuous": "contempt",
    "neutrality": "neutral",
}


def normalize_name(name: str) -> str:
    """Map a class-name spelling ("Happy", "angry", "Surprise") to its canonical name."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in CANONICAL:
        raise ValueError(f"'{name}' is not an expression name; expected one of {', '.join(CANONICAL)}")
    return key


def class_index(class_names: tuple[str, ...] | list[str]) -> dict[str, int]:
    """name -> index for a class list (validated to be canonical names)."""
    return {normalize_name(n): i for i, n in enumerate(class_names)}
