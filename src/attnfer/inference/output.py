"""Streaming prediction writers (JSON or CSV): rows are written as they come, so a long video keeps memory flat,
and a file target appears only when complete (written to a temporary name, renamed on close)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, TextIO

__all__ = ["PredictionWriter"]


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
            self.f: TextIO = self.tmp.open("w", newline="")
        else:
            self.f = sys.stdout
        self.rows = 0
        if fmt == "json":
            head = json.dumps(header)[:-1]  # open object, rows follow
            self.f.write(f'{head}, "rows": [' if header else '{"rows": [')
        else:
            fields = ["source", "status", "frame", "timestamp", "box", "detector_score", "label"]
            self.csv = csv.DictWriter(self.f, fieldnames=[*fields, *self.class_names, "error"], extrasaction="ignore")
            self.csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        if self.fmt == "json":
            self.f.write(("\n  " if self.rows == 0 else ",\n  ") + json.dumps(row))
        else:
            flat = {**row, **row.get("probabilities", {}), "box": " ".join(map(str, row.get("box") or []))}
            self.csv.writerow(flat)
        self.rows += 1

    def close(self, summary: dict[str, Any] | None = None, keep: bool = True) -> None:
        if self.fmt == "json":
            self.f.write("\n]" + (f', "summary": {json.dumps(summary)}' if summary else "") + "}\n")
        self.f.flush()
        if self.path:
            self.f.close()
            if keep:
                self.tmp.replace(self.path)
            else:
                self.tmp.unlink(missing_ok=True)
