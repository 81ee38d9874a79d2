"""Whether this process may write the SQLite state files, and the one line that says what to do.

A state database created by root (``sudo loyalty-bridge db upgrade``) cannot be used by the service
user: SQLite needs to write the database file, its ``-wal`` and ``-shm`` files and the directory
they live in (it creates and removes them), and the leader lock writes ``<database>.lock`` next to
them. Owns :func:`unwritable` (which of those files this user cannot write), :func:`access_error`
(the ``StateError`` naming them and the ``chown`` to run) and :func:`from_os_error` /
:func:`is_readonly` (recognising the errors SQLite and the lock file raise for it).
PostgreSQL and in-memory databases have no files of ours: nothing to check.

Must not import bridge.onec, bridge.site, bridge.notify or bridge.service.
"""

from __future__ import annotations

import errno
import os
import pwd
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bridge.errors import StateError

__all__ = [
    "access_error",
    "database_file",
    "describe",
    "from_os_error",
    "is_readonly",
    "owned_by_root",
    "state_files",
    "unwritable",
]

_READONLY = ("readonly database", "unable to open database file", "disk i/o error")


def database_file(url: str) -> Path | None:
    """The SQLite database file of ``state.url``; None for PostgreSQL or an in-memory database."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return Path(database).expanduser().absolute()


def state_files(url: str) -> list[Path]:
    """The files and the directory SQLite and the leader lock write for ``state.url``."""
    file = database_file(url)
    if file is None:
        return []
    return [
        file.parent,
        file,
        file.with_name(file.name + "-wal"),
        file.with_name(file.name + "-shm"),
        file.with_name(file.name + ".lock"),
    ]


def unwritable(url: str) -> list[Path]:
    """Of :func:`state_files`, those that exist and this process cannot write (a directory: enter)."""
    found = []
    for path in state_files(url):
        if not path.exists():
            continue
        mode = os.W_OK | os.X_OK if path.is_dir() else os.W_OK
        if not os.access(path, mode):
            found.append(path)
    return found


def owned_by_root(url: str) -> list[Path]:
    """Of :func:`state_files`, those that exist and belong to root (uid 0)."""
    found = []
    for path in state_files(url):
        try:
            if path.stat().st_uid == 0:
                found.append(path)
        except OSError:
            continue
    return found


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _owner(path: Path) -> str:
    try:
        uid = path.stat().st_uid
    except OSError:
        return "?"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def describe(paths: list[Path], url: str) -> tuple[str, str]:
    """``(what, fix)``: the paths this user cannot write with their owners, and the ``chown`` to run.

    A directory is handed over only when it holds nothing but the state files (a directory of its
    own, as ``/var/lib/loyalty-bridge``); a shared one (``/var/lib``, ``/tmp``) is never chowned.
    """
    user = _user()
    shown = ", ".join(f"{p} (owner {_owner(p)})" for p in paths)
    database = database_file(url)
    files = [p for p in paths if not p.is_dir() or (database is not None and _own_directory(p, database))]
    shared = [p for p in paths if p not in files]
    fix = f"run `sudo chown {user}: {' '.join(str(p) for p in files)}`" if files else ""
    if shared:
        fix += ("; " if fix else "") + (
            f"make {', '.join(map(str, shared))} writable for {user}, or put state.url in a directory "
            "of its own (e.g. /var/lib/loyalty-bridge)"
        )
    return f"not writable by user {user}: {shown}", fix


def _own_directory(folder: Path, database: Path) -> bool:
    """Whether ``folder`` holds nothing but ``database`` and its companions (``-wal``, ``.lock``…)."""
    if folder != database.parent:
        return False
    try:
        return all(entry.name.startswith(database.name) for entry in folder.iterdir())
    except OSError:
        return False


def access_error(paths: list[Path], url: str = "") -> StateError:
    """One line: what this user cannot write, who owns it, and the ``chown`` that fixes it."""
    what, fix = describe(paths, url)
    return StateError(
        f"state database files {what}; the bridge must be able to write them: {fix}",
        url=url,
        paths=[str(p) for p in paths],
    )


def from_os_error(exc: OSError, url: str = "") -> StateError | None:
    """A ``PermissionError`` (or a read-only file system) on one of the state files, as a ``StateError``."""
    if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        return None
    paths = unwritable(url) if url else []
    if not paths and exc.filename:
        paths = [Path(str(exc.filename))]
    if not paths:
        return None
    return access_error(paths, url)


def is_readonly(exc: BaseException) -> bool:
    """SQLite refusing to write (``attempt to write a readonly database``) or to open its files."""
    orig = getattr(exc, "orig", exc)
    return isinstance(orig, sqlite3.OperationalError) and any(t in str(orig).lower() for t in _READONLY)
