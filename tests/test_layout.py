"""The architecture's rules, checked on the source: family knowledge lives in the families, and one module owns
the input contract."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "attnfer"
FAMILY = re.compile(r"feratt|patt[-_ ]?lite|emo[-_ ]?net|sa[-_ ]fer", re.IGNORECASE)


def _files(*parts: str) -> list[Path]:
    out = []
    for part in parts:
        p = SRC / part
        out += sorted(p.rglob("*")) if p.is_dir() else [p]
    return [f for f in out if f.is_file() and f.suffix in (".py", ".html", ".j2", ".yaml", ".json")]


def test_consumers_name_no_model_family():
    """engine, inference, serve and the CLI work from the model's config and methods; a fifth family needs only
    models/<family>.py and a recipe."""
    hits = [
        f"{f.relative_to(SRC)}:{i}: {line.strip()}"
        for f in _files("engine", "inference", "serve", "cli.py")
        for i, line in enumerate(f.read_text().splitlines(), 1)
        if FAMILY.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_only_the_preprocessing_module_resizes_normalises_or_greys_model_inputs():
    pattern = re.compile(r"v2\.(Resize|Normalize|Grayscale)\b|transforms\.(Resize|Normalize|Grayscale)\b")
    hits = [
        f"{f.relative_to(SRC)}:{i}"
        for f in _files(".")
        if "preprocess" not in f.relative_to(SRC).parts
        for i, line in enumerate(f.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, hits
