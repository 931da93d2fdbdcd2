"""Run many ``varpo`` command lines as separate processes without paying the ~10 s torch/TRL import for each.

Usage: ``python tests/engine/cli_forkserver.py < cases.json > results.json`` with ``cases.json`` a list of argv
lists (without the leading ``varpo``). The server imports ``varpo.cli`` (and through it torch, transformers, TRL)
once, then ``fork()``s one child per command line. Each child is what ``python -m varpo ARGV`` would be after its
imports: ``sys.argv`` set, the real entry point ``app(prog_name="varpo")`` called, stdout and stderr on their own
files, and an exception that escapes printed by the interpreter's own hook (so a traceback shows up exactly as it
would for a user) with exit status 1. Output: a list of ``{"argv", "rc", "stdout", "stderr"}``.

Children run ``PARALLEL`` at a time. The server never runs a tensor op before forking, so no torch thread pool is
forked.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time

PARALLEL = 2
TIMEOUT_S = 120.0  # a child still running after this is killed and reported with rc "timeout"


def _child(argv: list[str], out_path: str, err_path: str) -> None:
    code = 1
    try:
        out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.argv = ["varpo", *argv]
        from varpo.cli import app

        try:
            app(prog_name="varpo")
            code = 0
        except SystemExit as exc:  # the interpreter's rules for sys.exit(...)
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: BLE001 - what an uncaught exception does to `python -m varpo`
            sys.excepthook(*sys.exc_info())
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main() -> None:
    cases = json.load(sys.stdin)
    import varpo.cli  # noqa: F401 - the expensive imports, paid once
    import varpo.run.train  # noqa: F401

    sys.stdout.flush()
    sys.stderr.flush()
    tmp = tempfile.mkdtemp(prefix="varpo-cli-")
    results: list[dict | None] = [None] * len(cases)
    running: dict[int, int] = {}

    started: dict[int, float] = {}

    def reap() -> None:
        while True:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid:
                break
            for late, t0 in started.items():
                if time.monotonic() - t0 > TIMEOUT_S:
                    os.kill(late, signal.SIGKILL)
            time.sleep(0.02)
        i = running.pop(pid)
        elapsed = time.monotonic() - started.pop(pid)
        rc = "timeout" if elapsed > TIMEOUT_S else os.waitstatus_to_exitcode(status)
        with open(f"{tmp}/{i}.out") as o, open(f"{tmp}/{i}.err") as e:
            results[i] = {"argv": cases[i], "rc": rc, "stdout": o.read(), "stderr": e.read(), "wall_s": elapsed}

    for i, argv in enumerate(cases):
        while len(running) >= PARALLEL:
            reap()
        pid = os.fork()
        if pid == 0:
            _child(argv, f"{tmp}/{i}.out", f"{tmp}/{i}.err")
        running[pid] = i
        started[pid] = time.monotonic()
    while running:
        reap()
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
