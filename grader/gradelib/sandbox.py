"""Run a student's program contained: it can hang, crash, fork-bomb, flood or
try to write outside its folder, and the grader goes on.

Containment, from the outside in:
- bubblewrap (bwrap): a read-only view of the whole file system except the
  writable folders given, a private /tmp, no network, a new PID namespace (so
  killing bwrap kills every process the program started, also ones that
  called setsid or ignore SIGTERM) and a new session (no controlling tty);
- when the grader runs as root, the program runs as `nobody`: root is exempt
  from RLIMIT_NPROC, so a fork bomb would otherwise not be stopped;
- rlimits: CPU time, processes, file size, open files, address space (not with
  AddressSanitizer, which reserves terabytes of shadow; ASan's own RSS limit
  is used instead), no core files;
- output: stdout and stderr are read through pipes and capped; a program that
  writes more is killed and marked as flooding;
- a wall-clock timeout per wait, with the process group killed on expiry.

Where bwrap cannot create namespaces (unprivileged user namespaces disabled),
the program still runs in its own process group with the rlimits, and a
warning says the file system is not isolated.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import diagnose

OUTPUT_CAP = 1 << 20  # bytes per stream
NOBODY = 65534


@dataclass
class Limits:
    cpu_seconds: int = 20
    processes: int = 64  # beyond what the user already runs
    file_size: int = 16 << 20
    open_files: int = 256
    address_space: int | None = 2 << 30  # None: no limit (AddressSanitizer)


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _count_processes(uid: int) -> int:
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


_bwrap_ok: bool | None = None
_bwrap_why = ""


def bwrap_usable() -> bool:
    """Can we create the sandbox here?  Checked once per process."""
    global _bwrap_ok, _bwrap_why
    if _bwrap_ok is None:
        if shutil.which("bwrap") is None:
            _bwrap_ok, _bwrap_why = False, "bwrap is not installed (Debian package bubblewrap)"
        else:
            cmd = _user_prefix() + ["bwrap", "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"]
            res = subprocess.run(cmd, capture_output=True, text=True)
            _bwrap_ok = res.returncode == 0
            _bwrap_why = res.stderr.strip()
        if not _bwrap_ok:
            print(f"sandbox: warning: no file-system isolation for student code: {_bwrap_why}", file=sys.stderr)
    return _bwrap_ok


def _user_prefix() -> list[str]:
    if _running_as_root():
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return []


def make_writable(path: Path) -> None:
    """A folder the sandboxed program may write (owned by nobody when we are root)."""
    path.mkdir(parents=True, exist_ok=True)
    if _running_as_root():
        for p in [path, *path.rglob("*")]:
            os.lchown(p, NOBODY, NOBODY)


class _Reader(threading.Thread):
    """Drains one pipe into a buffer, up to OUTPUT_CAP; calls on_flood beyond it."""

    def __init__(self, fd: int, cond: threading.Condition, on_flood) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.buf = bytearray()
        self.eof = False
        self.flooded = False
        self.cond = cond
        self.on_flood = on_flood

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                chunk = b""
            with self.cond:
                if not chunk:
                    self.eof = True
                    self.cond.notify_all()
                    break
                room = OUTPUT_CAP - len(self.buf)
                self.buf += chunk[:room]
                if len(chunk) > room and not self.flooded:
                    self.flooded = True
                    self.on_flood()
                self.cond.notify_all()
        os.close(self.fd)


@dataclass
class Exit:
    """How a contained process ended."""

    exitcode: int | None = None
    signal: int | None = None
    timed_out: bool = False
    flooded: bool = False
    stdout: bytes = b""
    stderr: bytes = b""
    extra: dict[str, str] = field(default_factory=dict)


class Contained:
    """One running program inside the sandbox."""

    def __init__(
        self,
        argv: list[str],
        cwd: Path,
        writable: list[Path],
        env: dict[str, str],
        limits: Limits,
        stdin: bool = True,
        readonly: list[Path] | None = None,
        blocked: tuple[int, ...] = (),
    ) -> None:
        self.cond = threading.Condition()
        self._killed_for_flood = False
        self._bwrap = bwrap_usable()
        info_r = info_w = -1
        base = _user_prefix()
        if self._bwrap:
            info_r, info_w = os.pipe()
            cmd = base + ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
            for r in readonly or []:
                cmd += ["--ro-bind", str(r), str(r)]  # e.g. the scratch tree, hidden by the private /tmp
            for w in writable:
                cmd += ["--bind", str(w), str(w)]
            cmd += ["--unshare-all", "--die-with-parent", "--new-session", "--info-fd", str(info_w),
                    "--chdir", str(cwd), "--"]
            cmd += argv
        else:
            cmd = base + argv
        nproc_base = _count_processes(NOBODY if _running_as_root() else os.getuid())

        def preexec() -> None:
            os.setpgid(0, 0)
            lim = [
                (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1),
                (resource.RLIMIT_NPROC, nproc_base + limits.processes, nproc_base + limits.processes),
                (resource.RLIMIT_FSIZE, limits.file_size, limits.file_size),
                (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
                (resource.RLIMIT_CORE, 0, 0),
            ]
            if limits.address_space is not None:
                lim.append((resource.RLIMIT_AS, limits.address_space, limits.address_space))
            for what, soft, hard in lim:
                resource.setrlimit(what, (soft, hard))
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            # The program starts with these signals blocked: the mask survives
            # exec (through setpriv and bwrap, which only touches SIGCHLD).
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

        try:
            self.popen = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=[info_w] if info_w >= 0 else [],
                preexec_fn=preexec,
            )
        finally:
            if info_w >= 0:
                os.close(info_w)
        self.pid = self._find_program_pid(info_r)
        self.out = _Reader(os.dup(self.popen.stdout.fileno()), self.cond, self._flood)
        self.err = _Reader(os.dup(self.popen.stderr.fileno()), self.cond, self._flood)
        self.popen.stdout.close()
        self.popen.stderr.close()
        self.out.start()
        self.err.start()
        self.result: Exit | None = None

    def _find_program_pid(self, info_r: int) -> int:
        """The host PID of the program itself (inside bwrap it is the reaper's child)."""
        if info_r < 0:
            return self.popen.pid
        with os.fdopen(info_r, "rb") as f:
            data = f.read()
        try:
            reaper = int(json.loads(data)["child-pid"])
        except (ValueError, KeyError):
            return self.popen.pid  # bwrap failed early; its stderr says why
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                kids = Path(f"/proc/{reaper}/task/{reaper}/children").read_text().split()
            except OSError:
                return reaper
            if kids:
                return int(kids[0])
            time.sleep(0.002)
        return reaper

    def _flood(self) -> None:
        self._killed_for_flood = True
        self.kill_all()

    # --- interaction -----------------------------------------------------
    def send(self, data: bytes) -> bool:
        """Write to the program's stdin; False if it no longer reads it."""
        if self.popen.stdin is None or self.popen.stdin.closed:
            return False
        try:
            self.popen.stdin.write(data)
            self.popen.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def close_stdin(self) -> None:
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except OSError:
                pass

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def stdout_snapshot(self) -> bytes:
        with self.cond:
            return bytes(self.out.buf)

    def running(self) -> bool:
        return self.popen.poll() is None

    def kill_all(self) -> None:
        """Kill the sandbox and everything in it."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.kill()
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> Exit:
        if self.result is not None:
            return self.result
        timed_out = False
        stuck = ""
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stuck = diagnose.host(self.pid).words()  # what it was doing, seen once before the kill
        self.kill_all()  # stragglers: children left in the background
        self.popen.wait()
        self.close_stdin()
        self.out.join(timeout=5)
        self.err.join(timeout=5)
        code = self.popen.returncode
        ex = Exit(timed_out=timed_out, flooded=self._killed_for_flood,
                  stdout=bytes(self.out.buf), stderr=bytes(self.err.buf))
        if stuck:
            ex.extra["stuck"] = stuck
        if not timed_out and not ex.flooded:
            if self._bwrap:
                # bwrap exits with the program's status, or 128+N when a signal killed it
                ex.exitcode, ex.signal = _decode_bwrap_status(code, ex.stderr)
            elif code < 0:
                ex.signal = -code
            else:
                ex.exitcode = code
        self.result = ex
        return ex


def _decode_bwrap_status(code: int, stderr: bytes) -> tuple[int | None, int | None]:
    if code < 0:
        return None, -code
    if code > 128 and code - 128 < signal.NSIG:
        return None, code - 128
    return code, None


def nobody_home() -> str:
    try:
        return pwd.getpwuid(NOBODY).pw_dir
    except KeyError:
        return "/nonexistent"


_ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")


def clean_text(b: bytes) -> str:
    """Bytes from a student's program as printable text."""
    return _ANSI.sub(b"", b).decode("utf-8", "replace")
