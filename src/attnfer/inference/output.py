"""Streaming prediction writers (JSON or CSV): rows are written as they come, so a long video keeps memory flat,
and a file target appears only when complete (written to a temporary name, renamed on close).

Every text value is written as valid UTF-8: a file name whose bytes are not UTF-8 (which Python carries as lone
surrogates) has those bytes written as ``\\xNN`` (Python's ``backslashreplace``;
:func:`attnfer.images.display_name`), the same text in CSV and JSON, so such a name never costs a row or the run."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from ..images import display_name

__all__ = ["PredictionWriter", "clean_text"]


def clean_text(value: Any) -> Any:
    """``value`` with every string in it (dict values and keys, list items) made valid UTF-8 by
    :func:`~attnfer.images.display_name`; other values unchanged."""
    if isinstance(value, str):
        return display_name(value)
    if isinstance(value, dict):
        return {clean_text(k): clean_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_text(v) for v in value]
    return value


class PredictionWriter:
    """``write(row)`` for each row, then ``close()``. ``path=None`` writes to stdout.

    JSON: ``{"detector": ..., "runtime": ..., "rows": [...], "summary": {...}}``; CSV: one line per row with a
    column per class probability and the box as ``x y w h``.
    """

    def __init__(self, fmt: str, class_names: list[str], header: dict[str, Any], path: str | Path | None = None):
        if fmt not in ("json", "csv"):
            raise ValueError(f"format must be json or csv, got {fmt!r}")
        self.fmt, self.class_names, self.path = fmt, list(class_names), Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = self.path.with_name(self.path.name + ".part")
            self.f: TextIO = self.tmp.open("w", newline="", encoding="utf-8")
        else:
            self.f = sys.stdout
        self.rows = 0
        if fmt == "json":
            head = json.dumps(clean_text(header))[:-1]  # open object, rows follow
            self.f.write(f'{head}, "rows": [' if header else '{"rows": [')
        else:
            fields = ["source", "status", "frame", "timestamp", "box", "detector_score", "label"]
            self.csv = csv.DictWriter(self.f, fieldnames=[*fields, *self.class_names, "error"], extrasaction="ignore")
            self.csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        row = clean_text(row)
        if self.fmt == "json":
            self.f.write(("\n  " if self.rows == 0 else ",\n  ") + json.dumps(row))
        else:
            flat = {**row, **row.get("probabilities", {}), "box": " ".join(map(str, row.get("box") or []))}
            self.csv.writerow(flat)
        self.rows += 1

    def close(self, summary: dict[str, Any] | None = None, keep: bool = True) -> None:
        if self.fmt == "json":
            self.f.write("\n]" + (f', "summary": {json.dumps(clean_text(summary))}' if summary else "") + "}\n")
        self.f.flush()
        if self.path:
            self.f.close()
            if keep:
                self.tmp.replace(self.path)
            else:
                self.tmp.unlink(missing_ok=True)
