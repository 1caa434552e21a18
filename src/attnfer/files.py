"""File-system helpers every layer shares: atomic writes, output-path checks, file modes from the umask, the cache
directory, and :class:`UserError`, the errors the command line reports in one line (no torch needed)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "OutputPathError",
    "UserError",
    "apply_umask",
    "atomic_write",
    "cache_dir",
    "check_output_path",
    "current_umask",
    "sha256_file",
    "write_json",
]


class UserError(Exception):
    """An expected mistake in what the user asked for (a bad path, value or file): the message is one line that
    names the file, key or option and what was expected. ``attnfer`` prints it as ``error: MESSAGE``, exit code 2."""


class OutputPathError(UserError, OSError):
    """An output path that cannot be written: a file where a directory is needed (or the reverse), no permission.
    An ``OSError`` too (``NotADirectoryError`` / ``IsADirectoryError`` / ``PermissionError`` by case)."""


class _NotADirectoryOutputError(OutputPathError, NotADirectoryError):
    pass


class _IsADirectoryOutputError(OutputPathError, IsADirectoryError):
    pass


class _NoPermissionOutputError(OutputPathError, PermissionError):
    pass


_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the system says (``/proc/self/status``), else by setting
    and restoring it under a lock (the one moment another thread could create a file with umask 0)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def apply_umask(path: str | Path, mode: int = 0o666) -> Path:
    """Give ``path`` the permissions a plain ``open()`` would have given it (``mode`` less the umask: 0644 under
    022), for files first written where the umask does not apply (``tempfile.mkstemp``'s 0600, libraries)."""
    os.chmod(path, mode & ~current_umask())
    return Path(path)


def check_output_path(path: str | Path, what: str, kind: Literal["dir", "file"] = "dir") -> Path:
    """Fail before any work when ``path`` cannot be written as a ``kind`` (a directory, created if missing; or a
    file, replaced if there): a file where a directory is needed, a directory where a file is, a file among its
    parents, or a parent this user may not write into. ``what`` names the option or argument (``--out``) in the
    message. Raises :class:`OutputPathError`."""
    path = Path(path)
    what = f"{what} " if what else ""
    if kind == "dir" and path.exists() and not path.is_dir():
        raise _NotADirectoryOutputError(
            f"{what}{path}: exists and is not a directory; expected a directory (new or existing)"
        )
    if kind == "file" and path.is_dir():
        raise _IsADirectoryOutputError(f"{what}{path}: is a directory; expected a file name")
    # the nearest directory that exists is where the first file or directory gets created
    base = path if kind == "dir" and path.is_dir() else path.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise _NotADirectoryOutputError(
            f"{what}{path}: {base} is a file, not a directory; expected a path under directories"
        )
    if not os.access(base, os.W_OK | os.X_OK):
        raise _NoPermissionOutputError(
            f"{what}{path}: permission denied; expected a directory this user may write ({base})"
        )
    return path


def cache_dir(*parts: str) -> Path:
    """attnfer's cache: ``$ATTNFER_CACHE`` or ``~/.cache/attnfer``, joined with ``parts`` (not created)."""
    root = Path(os.environ.get("ATTNFER_CACHE") or Path.home() / ".cache" / "attnfer")
    return root.joinpath(*parts)


def atomic_write(path: str | Path, data: str | bytes | Callable[[Path], Any]) -> Path:
    """Write ``path`` through a temporary file in the same directory, then rename it over ``path``.

    ``data`` is text, bytes, or a function that writes the file at the path it is given. Readers never see a
    half-written file and a failure leaves none behind. The file gets the usual permissions (0666 less the umask,
    whatever mode the writer created it with). A folder at ``path`` is refused before anything is written.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "Is a directory; expected a file", str(path))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        elif isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            data(tmp)
        with contextlib.suppress(PermissionError):  # a file system without modes (vfat, some mounts): its own rule
            apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None and e.filename in (str(tmp), tmp):
            # name the file the caller asked for, not the temporary one (OSError picks the subclass from errno)
            raise OSError(e.errno, e.strerror, str(path)) from e
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
