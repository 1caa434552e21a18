"""Helpers shared by the loaders."""

from __future__ import annotations

import codecs
import csv
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ..images import IMAGE_SUFFIXES  # noqa: F401  (re-exported for the loaders)
from .base import DatasetError, DatasetLayoutError, DatasetSplits, FERDataset, SkipLog, carve_validation


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetLayoutError(path, f"missing: expected {what}")
    return path


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetLayoutError(path, f"missing: expected {what}")
    return path


def _split_lines(data):
    """Lines of str or bytes split at ``\\n`` (a ``\\r`` before it dropped): the numbering editors show."""
    nl, cr = ("\n", "\r") if isinstance(data, str) else (b"\n", b"\r")
    lines = data.split(nl)
    if lines and not lines[-1]:
        lines.pop()
    return [line[:-1] if line.endswith(cr) else line for line in lines]


def read_lines(
    path: Path, what: str, skipped: SkipLog | None = None, keep_bad: bool = False
) -> Iterator[tuple[int, str | DatasetError]]:
    """``(line number, text)`` of each line of a UTF-8 text file (label lists, CSV files), in order.

    A UTF-8 byte-order mark (Excel's and Windows Notepad's "UTF-8 with BOM") is dropped. A line that is not UTF-8
    is a :class:`DatasetError` naming the file, the line, the byte and column, and what was expected (``what``):
    raised, or, with ``skipped`` enabled, recorded when the iteration reaches it (so problems are listed in line
    order) and the line left out; ``keep_bad`` yields it as ``(n, error)`` instead, for callers that count rows and
    record it themselves. A file that cannot be read at all raises at once.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DatasetError(path, f"cannot be read ({e.strerror or e}): expected {what}") from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _decode_lines(path, what, data, skipped, keep_bad)
    return iter(enumerate(_split_lines(text), 1))


def _decode_lines(
    path: Path, what: str, data: bytes, skipped: SkipLog | None, keep_bad: bool
) -> Iterator[tuple[int, str | DatasetError]]:
    for lineno, raw in enumerate(_split_lines(data), 1):
        try:
            yield lineno, raw.decode("utf-8")
        except UnicodeDecodeError as e:
            error = DatasetError(
                path,
                f"byte 0x{raw[e.start]:02x} at column {e.start + 1} is not UTF-8: expected {what} as UTF-8 text "
                "(re-save the file as UTF-8)",
                lineno,
            )
            if skipped is None:
                raise error from None
            if keep_bad:
                yield lineno, error
            else:
                skipped.handle(error)


def csv_rows(
    lines: Iterable[tuple[int, str | DatasetError]],
) -> Iterator[tuple[int, list[str] | DatasetError]]:
    """``(line number, fields)`` of the CSV lines from :func:`read_lines` (one row per line, as these datasets'
    files are written; ``[]`` for a blank line; a ``keep_bad`` error passed on)."""
    for n, t in lines:
        yield n, t if isinstance(t, DatasetError) else next(csv.reader([t]), [])


def quote(text: str) -> str:
    """``'text'`` for messages; characters that would be invisible there (a BOM, a no-break space, a control
    character) are shown as escapes (``'\\ufefftrain_00001.jpg'``)."""
    return f"'{text}'" if text.isprintable() else repr(text)


def finish(
    name: str,
    class_names: Sequence[str],
    splits: dict[str, FERDataset],
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    skipped: SkipLog | None = None,
    groups: Sequence[str] | None = None,
    notes: list[str] | None = None,
) -> DatasetSplits:
    """Check splits are non-empty and make sure a validation split exists (carving one from train).

    With ``skipped`` enabled, every split records the images it cannot decode there (``skip_bad``).
    """
    skipped = skipped if skipped is not None else SkipLog()
    for split, ds in splits.items():
        if len(ds) == 0:
            n = len(skipped.entries)
            raise DatasetError(name, f"split '{split}' is empty" + (f" ({n} samples skipped)" if n else ""))
    if "validation" in splits:
        source = "dataset"
    else:
        train, val, source = carve_validation(splits["train"], val_fraction, seed, groups)
        splits = {"train": train, "validation": val, **{k: v for k, v in splits.items() if k != "train"}}
    order = ["train", "validation", "test"]
    ordered = {k: splits[k] for k in order if k in splits}
    ordered.update({k: v for k, v in splits.items() if k not in ordered})
    if skipped.enabled:
        for ds in ordered.values():
            ds.skip_log = skipped
    return DatasetSplits(name, list(class_names), ordered, source, skipped, notes or [])


def parse_int(token: str, path: Path, line: int | None, field: str) -> int:
    """An integer field: ``3``, or a whole number written as a float (``3.0``, ``3.0000000e+00``, as CK+'s files and
    spreadsheet exports write them). ``3.7``, ``nan`` or ``inf`` is a :class:`DatasetError` naming the file and line:
    never rounded or truncated to a class."""
    t = token.strip()
    try:
        return int(t)
    except ValueError:
        pass
    try:
        value = float(t)
    except ValueError:
        raise DatasetError(path, f"{field} '{t}' is not a number: expected an integer", line) from None
    if not math.isfinite(value) or value != math.floor(value):
        raise DatasetError(path, f"{field} '{t}' is not a whole number: expected an integer", line)
    return int(value)
