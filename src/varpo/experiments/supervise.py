"""Run one sweep command (a run or a ``--prepare``) so that it dies with the sweep driver, whatever kills the driver.

    python -I -S supervise.py DRIVER_PID [--fd N] -- COMMAND [ARG…]

The sweep driver starts this file by path (standard library only: no ``varpo``/torch import, ~30 ms), once per
command. It starts COMMAND in a new session, i.e. its own process group (COMMAND and anything it spawns), passes
on the inherited file descriptor N (the run directory's lock) and closes its own copy, so the lock is held exactly
as long as COMMAND lives (and the driver, which holds it too), waits, and exits with COMMAND's status (128 + signal
when it was killed). The process group is killed (SIGTERM, then SIGKILL after ``GRACE_S``) when

* the driver dies, however (``kill -9`` included): on Linux the kernel sends this process SIGTERM at once
  (``prctl(PR_SET_PDEATHSIG)``); everywhere, it notices within ``POLL_S`` that its parent is no longer the driver;
* this process gets SIGTERM, SIGINT or SIGHUP (the driver's timeout, Ctrl-C in the terminal: COMMAND's own group is
  not the terminal's foreground group, so this relays it);
* COMMAND exits while processes it started are still in its group (strays are killed, not left behind).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

GRACE_S = 5.0
POLL_S = 0.2


def _parent_death_signal() -> None:
    """Linux: have the kernel send SIGTERM to this process when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl: the getppid poll still catches the driver's death
        pass


def _kill_group(pgid: int, child: subprocess.Popen | None) -> None:
    """SIGTERM the group, SIGKILL what is left after GRACE_S (``child``, the group leader, is reaped on the way so
    that it does not count as alive)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline:
            if child is not None:
                child.poll()
            if not _group_alive(pgid):
                return
            time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs. Zombies do not count (a killed grandchild waits for init to
    reap it, which can take a while in a container); on Linux /proc says which are zombies."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if not os.path.isdir("/proc/self"):
        return True
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def main(argv: list[str]) -> int:
    driver = int(argv[0])
    rest = argv[1:]
    keep: tuple[int, ...] = ()
    if rest[:1] == ["--fd"]:
        keep, rest = (int(rest[1]),), rest[2:]
    if rest[:1] != ["--"] or len(rest) < 2:
        print("usage: supervise.py DRIVER_PID [--fd N] -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    command = rest[1:]
    _parent_death_signal()
    if os.getppid() != driver:  # the driver died before the kernel was told
        return _status(-signal.SIGTERM)
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        child = subprocess.Popen(command, start_new_session=True, pass_fds=keep)
    except OSError as err:
        print(f"supervise: cannot start {command[0]!r}: {err}", file=sys.stderr)
        return 127
    for fd in keep:  # from now on the lock lives exactly as long as COMMAND (which holds its own copy)
        os.close(fd)
    while True:
        try:
            returncode = child.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            if stop.is_set() or os.getppid() != driver:
                _kill_group(child.pid, child)
                child.wait()
                return _status(-signal.SIGTERM)
            continue
        _kill_group(child.pid, None)  # strays COMMAND left in its group
        return _status(returncode)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
