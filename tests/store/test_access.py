"""State the service user cannot write (created by root): `check` says which files and the `chown`
that fixes them; `once` says it in one line, exit 69; `run` says it once, without a traceback.

The permission tests need an ordinary user: root writes any file, whatever its mode."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.errors import StateError
from bridge.service.check import CheckReport, _database
from bridge.service.wiring import load
from bridge.store import access
from bridge.store.leader import leader_lock
from tests.test_cli import CONFIG, REPO

needs_ordinary_user = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes any file whatever its mode"
)


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ONEC_PASSWORD", "secret")
    state = tmp_path / "state"
    state.mkdir()
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(db=state / "state.db", mapping=REPO / "mappings" / "ut11.yaml"), "utf-8")
    return path


@pytest.fixture
def root_owned(config_file: Path) -> Iterator[Path]:
    """A migrated state whose files and directory this user may read but not write (as root's are)."""
    result = CliRunner().invoke(main, ["db", "upgrade", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    state = config_file.parent / "state"
    (state / "state.db.lock").write_text("")
    files = [state / name for name in ("state.db", "state.db.lock")]
    read_only = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
    for file in files:
        file.chmod(read_only)
    state.chmod(read_only | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    yield state
    state.chmod(stat.S_IRWXU)
    for file in files:
        file.chmod(stat.S_IRUSR | stat.S_IWUSR)


@needs_ordinary_user
def test_check_names_the_files_and_the_chown(config_file: Path, root_owned: Path) -> None:
    report = CheckReport()
    _database(report, load(config_file))
    [problem] = report.problems
    assert problem.startswith("State database: state database files not writable by user ")
    for name in ("state.db", "state.db.lock"):
        assert str(root_owned / name) in problem
    assert f"sudo chown {access._user()}: {root_owned} {root_owned / 'state.db'}" in problem


@needs_ordinary_user
@pytest.mark.parametrize("command", [["once"], ["outbox", "retry", "--all-dead"]])
def test_a_command_says_it_in_one_line_exit_69(
    config_file: Path, root_owned: Path, command: list[str]
) -> None:
    result = CliRunner().invoke(main, [*command, "--config", str(config_file)])
    assert result.exit_code == 69, result.output
    # (``once`` on this never-run state also warns that poll.start, 2026-01-01, lies far back)
    [line] = [x for x in result.stderr.splitlines() if not x.startswith("loyalty-bridge: warning: ")]
    assert line.startswith("loyalty-bridge: state: state database files not writable by user ")
    assert "sudo chown" in line and str(root_owned / "state.db") in line
    assert "Traceback" not in result.output


@needs_ordinary_user
def test_the_leader_lock_names_its_file(config_file: Path, root_owned: Path) -> None:
    lock = leader_lock(load(config_file).state.url)
    with pytest.raises(StateError, match=r"state\.db\.lock"):
        lock.try_acquire()


# --- what does not need an ordinary user ----------------------------------------------------------


def test_a_permission_error_on_a_state_file_becomes_a_state_error(tmp_path: Path) -> None:
    lock = tmp_path / "state.db.lock"
    error = access.from_os_error(PermissionError(errno.EACCES, "Permission denied", str(lock)))
    assert error is not None and str(lock) in str(error) and "sudo chown" in str(error)
    assert access.from_os_error(FileNotFoundError(errno.ENOENT, "No such file", str(lock))) is None


def test_sqlites_readonly_errors_are_recognised() -> None:
    import sqlite3

    assert access.is_readonly(sqlite3.OperationalError("attempt to write a readonly database"))
    assert access.is_readonly(sqlite3.OperationalError("unable to open database file"))
    assert not access.is_readonly(sqlite3.OperationalError("database is locked"))
    assert not access.is_readonly(ValueError("attempt to write a readonly database"))


def test_a_shared_directory_is_never_chowned(tmp_path: Path) -> None:
    own, shared = tmp_path / "own", tmp_path / "shared"
    own.mkdir()
    shared.mkdir()
    (own / "state.db").write_text("")
    (shared / "state.db").write_text("")
    (shared / "someone-else.txt").write_text("")
    _, fix = access.describe([own, own / "state.db"], f"sqlite:///{own / 'state.db'}")
    assert fix == f"run `sudo chown {access._user()}: {own} {own / 'state.db'}`"
    _, fix = access.describe([shared, shared / "state.db"], f"sqlite:///{shared / 'state.db'}")
    assert fix.startswith(f"run `sudo chown {access._user()}: {shared / 'state.db'}`; make {shared} writable")
    assert access.unwritable("postgresql+psycopg://bridge@db/loyalty") == []
    assert access.unwritable("sqlite://") == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root's check says it")
def test_check_run_as_root_warns_that_root_owns_the_state(config_file: Path) -> None:
    assert CliRunner().invoke(main, ["db", "upgrade", "--config", str(config_file)]).exit_code == 0
    report = CheckReport()
    _database(report, load(config_file))
    [warning] = [i for i in report.items if i.kind == "warning"]
    assert "checked as root, and root owns" in warning.text and "state.db" in warning.text
    assert "as_bridge check" in warning.fix and report.problems == []
