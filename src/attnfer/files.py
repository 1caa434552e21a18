"""File-system helpers every layer shares: atomic writes and the cache directory (no torch needed)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "cache_dir", "sha256_file", "write_json"]


def cache_dir(*parts: str) -> Path:
    """attnfer's cache: ``$ATTNFER_CACHE`` or ``~/.cache/attnfer``, joined with ``parts`` (not created)."""
    root = Path(os.environ.get("ATTNFER_CACHE") or Path.home() / ".cache" / "attnfer")
    return root.joinpath(*parts)


def atomic_write(path: str | Path, data: str | bytes | Callable[[Path], Any]) -> Path:
    """Write ``path`` through a temporary file in the same directory, then rename it over ``path``.

    ``data`` is text, bytes, or a function that writes the file at the path it is given. Readers never see a
    half-written file and a failure leaves none behind. The file gets the usual permissions (the umask applies).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        elif isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            data(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex), read in blocks."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_json(path: str | Path, obj: Any) -> Path:
    """``obj`` as indented JSON, atomically."""
    return atomic_write(path, json.dumps(obj, indent=2) + "\n")
