"""A pre-warmed launcher for the crash matrix: ``python -m tests.crash.zygote`` imports the bridge
once, then forks one child per command it reads, so a ``once`` costs its cycle instead of ~3 s of
imports. The child is a real process: ``os._exit(137)`` at a crash point ends it with its
transaction open and its sockets unclosed, exactly as under ``python -m bridge``.

Protocol (one JSON object per line): in ``{"argv": [...], "env": {...}, "out": "path"}``, out
``{"code": N}``. The zygote itself starts no thread and opens no connection or database, so
forking it is safe; the child replaces its whole environment with ``env`` before running the CLI.
"""

from __future__ import annotations

import json
import os
import sys


def _warm() -> None:
    """Import what ``once`` imports (and nothing that starts a thread or opens a connection)."""
    import bridge.cli
    import bridge.onec.sources
    import bridge.runtime.config
    import bridge.service.runner
    import bridge.service.wiring
    import bridge.site.webhook
    import bridge.store.db  # noqa: F401


def _child(argv: list[str], env: dict[str, str], out: str) -> None:
    null = os.open(os.devnull, os.O_RDONLY)  # not the zygote's command pipe
    os.dup2(null, 0)
    os.close(null)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)
    os.environ.clear()
    os.environ.update(env)
    from bridge.cli import main

    code = 0
    try:
        main(argv, prog_name="loyalty-bridge")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # an unexpected crash of the CLI itself: report it like Python would
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    _warm()
    reply = sys.stdout
    for line in sys.stdin:
        command = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(command["argv"], command["env"], command["out"])
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        reply.write(json.dumps({"code": code}) + "\n")
        reply.flush()


if __name__ == "__main__":
    main()
