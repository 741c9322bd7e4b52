"""The keeper: what stands in for bubblewrap's PID namespace where bwrap cannot run (sandbox.py's
fallback, in an unprivileged container such as Gradescope's or a CI job's).

    python3 -I -S keeper.py LIFE_FD INFO_FD -- PROGRAM [ARGS...]

It runs as the grader's user (root in a container) and starts PROGRAM (through setpriv, which drops
to the sandbox's user) in a session of its own, with the signal mask the keeper itself started with.
Like bwrap with --unshare-pid --die-with-parent it then:
- is a child subreaper (PR_SET_CHILD_SUBREAPER): a process PROGRAM leaves behind, even one that
  double-forked into a session of its own, stays below the keeper, where the grader's watchdog
  counts its memory and the keeper finds it;
- kills everything below it when PROGRAM exits, when the grader asks (SIGTERM: Contained.kill_all),
  and when the grader dies, however it dies (LIFE_FD: the read end of a pipe whose write end only
  the grader holds; it reaches end of file when the grader is gone);
- exits with PROGRAM's status, or 128+N when signal N killed it, and reports PROGRAM's PID on
  INFO_FD as JSON ({"program-pid": N}), as bwrap's --info-fd does.

PROGRAM runs as another user than the keeper (root), so it cannot signal the keeper to escape.
Standard library only, no site packages (-I -S): it starts in a few tens of milliseconds.
"""
from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
SWEEP_SECONDS = 5.0  # how long the keeper tries to kill what is left (a process in D state may linger)


def children() -> list[int]:
    """The keeper's own children (orphans below it are reparented to it: it is a subreaper)."""
    pid = os.getpid()
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return kids


def tree(roots: list[int]) -> list[int]:
    seen: list[int] = []
    todo = list(roots)
    while todo and len(seen) < 65536:
        p = todo.pop()
        seen.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                try:
                    with open(f"/proc/{p}/task/{tid}/children") as f:
                        todo += [int(x) for x in f.read().split()]
                except OSError:
                    pass
        except OSError:
            pass
    return seen


def sweep(program: int) -> None:
    """SIGKILL to PROGRAM's session and to every process below the keeper, until none is left."""
    deadline = time.monotonic() + SWEEP_SECONDS
    while time.monotonic() < deadline:
        try:
            os.killpg(program, signal.SIGKILL)
        except OSError:
            pass
        for p in tree(children()):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        try:
            while True:  # reap; orphans of the killed keep arriving as our children
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
        except ChildProcessError:
            return
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[3] != "--":
        print("usage: keeper.py LIFE_FD INFO_FD -- PROGRAM [ARGS...]", file=sys.stderr)
        return 126
    life, info, prog = int(argv[1]), int(argv[2]), argv[4:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"keeper: PR_SET_CHILD_SUBREAPER: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 126
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the program's, as the grader set it
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stop = []
    signal.signal(signal.SIGCHLD, lambda s, f: None)
    signal.signal(signal.SIGTERM, lambda s, f: stop.append(s))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD, signal.SIGTERM])
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            signal.set_wakeup_fd(-1)
            # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec.
            for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(s, signal.SIG_DFL)
            for fd in (life, info, wake_r, wake_w):
                os.close(fd)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.execvp(prog[0], prog)
        except OSError as e:
            os.write(2, f"keeper: cannot run {prog[0]}: {e.strerror}\n".encode())
        os._exit(127)
    try:
        os.write(info, json.dumps({"program-pid": pid}).encode())
    finally:
        os.close(info)
    # The program's stdin, stdout and stderr are its own: a program that stops reading its input, or
    # closes its output, must look so to the grader, as it would without the keeper.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    poller = select.poll()
    poller.register(wake_r, select.POLLIN)
    poller.register(life, select.POLLIN | select.POLLHUP)
    status: int | None = None
    while status is None and not stop:
        for fd, ev in poller.poll():
            if fd == life:  # the grader is gone: nothing of the program may outlive it
                sweep(pid)
                return 128 + signal.SIGKILL
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
        try:
            while True:
                p, st = os.waitpid(-1, os.WNOHANG)
                if p == 0:
                    break
                if p == pid:
                    status = st
        except ChildProcessError:
            break
    sweep(pid)
    if status is None:
        return 128 + signal.SIGKILL
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
