"""Run a student's program contained: it can hang, crash, fork-bomb, flood,
eat memory or disk, or try to read or write outside its folder, and the grader
goes on.

Containment, from the outside in:
- bubblewrap (bwrap): a new root that holds only the system's programs and
  libraries (/usr, /etc and the /bin, /lib... links), read-only; a private
  /tmp of bounded size; /dev and /proc of its own; no network; a new PID
  namespace (killing bwrap kills every process the program started, also ones
  that called setsid or ignore SIGTERM) and a new session (no controlling
  tty). The program sees its own folders and nothing else: not the
  repository, not the class folder, not other submissions, not reports.
  Paths to hide that lie inside a system folder (a repository cloned under
  /usr/src, say) are covered with an empty tmpfs;
- when the grader runs as root, bwrap runs as root (so it can bind paths that
  an unprivileged user cannot traverse, such as a clone under /root) and the
  program runs as `nobody` with no capabilities and no_new_privs (setpriv):
  root is exempt from RLIMIT_NPROC, so a fork bomb would otherwise not stop;
- rlimits: CPU time, processes, file size, open files, address space (not with
  AddressSanitizer, which reserves terabytes of shadow: ASan's own RSS limit
  is used instead), no core files;
- a watchdog on the whole tree: resident memory of every process in it (a
  sanitized program, or anything it execs, has no address-space limit) and
  the disk its writable folders hold; over either limit the tree is killed;
- output: stdout and stderr are read through pipes and capped; a program that
  writes more is killed and marked as flooding;
- a wall-clock timeout per wait, with the process group killed on expiry.

Where bwrap cannot create namespaces (an unprivileged container: Gradescope's, a CI
job's; or user namespaces disabled; GRADER_SANDBOX=none forces it), the fallback is what such
a container allows: as root, the program runs as the sandbox's own non-root user (setpriv, as
above), with the same rlimits and watchdog, under the keeper (keeper.py: a subreaper that kills
everything the program left when it exits, when the grader stops it and when the grader dies),
in a session of its own. It sees the whole file system with that user's rights: the grader's
files and the results are root's and not writable by it; the container is the outer boundary.
mode_line() says which mode is in use.

The sandbox's user: GRADER_SANDBOX_USER (the Gradescope archive's setup.sh makes one, `student`)
when it names a user other than root, else `nobody`; when the grader is not root, the grader's
own user (the program can then write wherever the grader can).

Files a contained program could write are read by the grader only through
read_untrusted() (no links, no FIFOs, regular files of the sandbox's user).
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import platform
import pwd
import re
import resource
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import termios
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from . import diagnose, keeper

OUTPUT_CAP = 1 << 20  # bytes per stream
NOBODY = 65534
REPO = Path(__file__).resolve().parent.parent.parent
# What the sandbox's root holds besides the program's own folders: the system, read-only.
SYSTEM_DIRS = ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
TMP_SIZE = 64 << 20  # the private /tmp and /dev/shm, each
# A private tmpfs holds a little more than the disk limit, so that one filled to the brim is over it: the
# watchdog then says so, instead of the program only seeing ENOSPC.
TMPFS_SLACK = 1 << 20
PRIVATE_TMP = ["/tmp", "/dev/shm"]  # tmpfs of the sandbox's own (the machine's memory): counted as its disk
WATCH_PERIOD = 0.2  # seconds between two looks of the watchdog
CONCURRENT_TASKS = 256  # room under RLIMIT_NPROC for the sandbox user's other tasks started meanwhile
MAX_WATCHED_FILES = 20000  # more files than this in the writable folders: killed


class SandboxError(Exception):
    """The sandbox itself could not start the program (a setup problem, not the student's)."""


@dataclass
class Limits:
    cpu_seconds: int = 20
    processes: int = 64  # beyond what the user already runs
    file_size: int = 16 << 20
    open_files: int = 256
    address_space: int | None = 2 << 30  # None: no limit (AddressSanitizer)
    memory: int = 1 << 30  # resident memory of the whole tree
    disk: int = 64 << 20  # bytes the writable folders may hold (and the private /tmp)


def _running_as_root() -> bool:
    return os.geteuid() == 0


_user: tuple[str, int, int] | None = None


def sandbox_user() -> tuple[str, int, int]:
    """(name, uid, gid) of the user contained programs run as (when we are root): GRADER_SANDBOX_USER
    if it names a user other than root, else nobody."""
    global _user
    if _user is None:
        _user = ("nobody", NOBODY, NOBODY)
        name = os.environ.get("GRADER_SANDBOX_USER", "")
        if name:
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                print(f"sandbox: warning: GRADER_SANDBOX_USER={name}: no such user; using nobody", file=sys.stderr)
            else:
                if pw.pw_uid != 0 and pw.pw_gid != 0:
                    _user = (name, pw.pw_uid, pw.pw_gid)
    return _user


def _count_processes(uid: int) -> int:
    """The tasks uid runs, as RLIMIT_NPROC counts them: every thread is one (QEMU, which runs as nobody,
    has several)."""
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    n += len(os.listdir(f"/proc/{d}/task"))
            except OSError:
                pass
    return n


_bwrap_ok: bool | None = None
_bwrap_why = ""
# What contained programs must never see, when a system folder would show it: the repository
# (solutions, tests), and what the grader's caller names (the submission, a class folder, reports;
# GRADER_HIDE, a list like PATH, carries them from grader/grade into the test process).
_hidden: set[Path] = {REPO, *(Path(x) for x in os.environ.get("GRADER_HIDE", "").split(os.pathsep) if x)}


def hide(path: Path) -> None:
    """Never show `path` to a contained program (a submission, a class folder, reports)."""
    _hidden.add(Path(path).resolve())


def hidden_env() -> str:
    """GRADER_HIDE for a child process that runs contained programs."""
    return os.pathsep.join(sorted(str(h) for h in _hidden))


def bwrap_usable() -> bool:
    """Can we create the sandbox here?  Checked once per process."""
    global _bwrap_ok, _bwrap_why
    if _bwrap_ok is None:
        if os.environ.get("GRADER_SANDBOX") == "none":
            _bwrap_ok, _bwrap_why = False, "GRADER_SANDBOX=none"
        elif shutil.which("bwrap") is None:
            _bwrap_ok, _bwrap_why = False, "bwrap is not installed (Debian package bubblewrap)"
        else:
            cmd = ["bwrap", *_namespaces(), *_root_binds(), "--die-with-parent", "--", *_user_prefix(), "true"]
            res = subprocess.run(cmd, capture_output=True, text=True)
            _bwrap_ok = res.returncode == 0
            _bwrap_why = (res.stderr.strip().splitlines() or [f"bwrap exited with status {res.returncode}"])[0]
    return _bwrap_ok


def mode_line() -> str:
    """One line that says how student code is contained here (the console and results.json show it)."""
    if _running_as_root():
        name, uid, _ = sandbox_user()
        who = f"as user {name} (uid {uid})"
    else:
        who = f"as the grader's own user (uid {os.getuid()})"
    if bwrap_usable():
        return (f"Sandbox: bubblewrap (a read-only system, its own folders only, PID namespace, no network), "
                f"student code {who}, with rlimits and a memory and disk watchdog.")
    if not _running_as_root():
        who += ", which can write wherever the grader can"
    return (f"Sandbox: fallback without namespaces ({_bwrap_why}): student code {who}, with rlimits, a memory and "
            f"disk watchdog and a keeper that kills all it starts; it sees the file system but cannot write the "
            f"grader's files or the results; the container is the outer boundary.")


def _namespaces() -> list[str]:
    ns = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    # As root, no user namespace: the program drops to nobody inside (setpriv), which a
    # namespace that maps only root could not do.
    return ns if _running_as_root() else ["--unshare-user", *ns]


def _root_binds() -> list[str]:
    """The system, read-only: /usr, /etc, and /bin, /lib... as links where the system has links."""
    args: list[str] = []
    for d in SYSTEM_DIRS:
        for parent in reversed(Path(d).parents[:-1]):  # traversable, unlike bwrap's own (0700 under root)
            args += ["--perms", "0755", "--dir", str(parent)]
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    return args


def _hide_args(shown: list[Path]) -> list[str]:
    """Cover hidden paths that a system folder would show (a clone under /usr/src)."""
    args: list[str] = []
    roots = [Path(d).resolve() for d in SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    for h in sorted(_hidden):
        if not any(h.is_relative_to(r) for r in roots) or not h.exists():
            continue
        if any(p.is_relative_to(h) and p != h for p in shown) or h.is_dir():
            args += ["--tmpfs", str(h)]
        else:
            args += ["--ro-bind", "/dev/null", str(h)]
    return args


def _parent_dirs(paths: list[Path], covered: list[Path]) -> list[str]:
    """Traversable folders on the way to the bound paths (bwrap would make them 0700, root's).
    Folders inside a system folder exist already, unless a tmpfs `covered` them."""
    system = [Path(d) for d in SYSTEM_DIRS] + [Path("/dev"), Path("/proc")]
    made: list[str] = []
    args: list[str] = []
    for p in paths:
        for parent in reversed(p.parents):
            if parent == Path("/") or parent == Path("/tmp"):
                continue
            if any(parent.is_relative_to(d) for d in system) and not any(
                    parent.is_relative_to(c) and parent != c for c in covered):
                continue
            if str(parent) not in made:
                made.append(str(parent))
                args += ["--perms", "0755", "--dir", str(parent)]
    return args


def _user_prefix() -> list[str]:
    """As root: become the sandbox's user, with no capabilities and no way to regain any."""
    if _running_as_root():
        _, uid, gid = sandbox_user()
        return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--no-new-privs", "--"]
    return []


def sandbox_uid() -> int:
    """The user contained programs run as."""
    return sandbox_user()[1] if _running_as_root() else os.getuid()


def closed_to_user(path: Path) -> Path | None:
    """In the fallback as root, the first folder on the way to `path` that the sandbox's user may not
    enter (search permission, from its mode bits); None when it can reach `path`, or when that is not
    the question (bubblewrap binds what it needs; not root: the program runs as the grader's user).
    A clone under /root (0700) is the usual case."""
    if not _running_as_root() or bwrap_usable():
        return None
    _, uid, gid = sandbox_user()
    try:
        groups = {gid, *os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)}
    except KeyError:  # a uid with no name: its own group only
        groups = {gid}
    for d in [*reversed(path.parents), path]:
        try:
            st = os.stat(d)
        except OSError:
            return d
        if not stat.S_ISDIR(st.st_mode):
            continue
        bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid in groups else stat.S_IXOTH
        if not st.st_mode & bit:
            return d
    return None


def make_writable(path: Path) -> None:
    """A folder the sandboxed program may write (owned by the sandbox's user when we are root)."""
    path.mkdir(parents=True, exist_ok=True)
    if _running_as_root():
        _, uid, gid = sandbox_user()
        for p in [path, *path.rglob("*")]:
            os.lchown(p, uid, gid)


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
        poller = select.poll()
        poller.register(self.fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while True:
            poller.poll()
            # Read under the lock, so mark() never misses bytes between the pipe and the buffer.
            with self.cond:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
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

    def mark(self) -> int:
        """Bytes the program has written so far: what was read plus what waits in the pipe."""
        with self.cond:
            if self.eof:
                return len(self.buf)
            try:
                waiting = struct.unpack("i", fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0"))[0]
            except OSError:
                waiting = 0
            return len(self.buf) + waiting


@dataclass
class Exit:
    """How a contained process ended."""

    exitcode: int | None = None
    signal: int | None = None
    timed_out: bool = False
    flooded: bool = False
    killed_for: str | None = None  # the watchdog killed it: memory or disk
    state: "diagnose.ProcState | None" = None  # where it was when the wait timed out
    stdout: bytes = b""
    stderr: bytes = b""
    extra: dict[str, str] = field(default_factory=dict)


# rt_sigqueueinfo(2)'s number, by machine (Python has no call for it)
_SYS_RT_SIGQUEUEINFO = {"x86_64": 129, "aarch64": 138}


def queue_signal(pid: int, sig: int, code: int) -> None:
    """Queue sig to pid with a siginfo_t whose si_code is `code` (negative: the kernel refuses codes >= 0,
    which only it may send, and SI_TKILL), si_pid and si_uid this process's."""
    nr = _SYS_RT_SIGQUEUEINFO.get(platform.machine())
    if nr is None:
        raise RuntimeError(f"grader: rt_sigqueueinfo's number on {platform.machine()} is not known")
    info = ctypes.create_string_buffer(128)  # siginfo_t: si_signo, si_errno, si_code, (pad), si_pid, si_uid
    struct.pack_into("iii4xii", info, 0, sig, 0, code, os.getpid(), os.getuid())
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(nr, pid, sig, info) == -1:
        err = ctypes.get_errno()
        raise ProcessLookupError(pid) if err == 3 else OSError(err, os.strerror(err))


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
        self.killed_for: str | None = None  # the watchdog's reason, once it killed the tree
        self._bwrap = bwrap_usable()
        self.writable = [Path(w) for w in writable]
        self.limits = limits
        info_r = info_w = -1
        if self._bwrap:
            info_r, info_w = os.pipe()
            shown = [Path(x).resolve() for x in [*(readonly or []), *writable, cwd]]
            hides = _hide_args(shown)
            covered = [Path(hides[i + 1]) for i in range(0, len(hides), 2) if hides[i] == "--tmpfs"]
            tmpfs = str(min(limits.disk, TMP_SIZE) + TMPFS_SLACK)
            cmd = ["bwrap", *_namespaces(), *_root_binds(), "--dev", "/dev", "--proc", "/proc"]
            for d in PRIVATE_TMP:  # bounded: bwrap's /dev/shm would otherwise be a tmpfs as large as memory
                cmd += ["--perms", "1777", "--size", tmpfs, "--tmpfs", d]
            cmd += hides
            cmd += _parent_dirs(shown, covered)
            for r in readonly or []:
                cmd += ["--ro-bind", str(r), str(r)]
            for w in writable:
                cmd += ["--bind", str(w), str(w)]
            cmd += ["--die-with-parent", "--new-session", "--info-fd", str(info_w), "--chdir", str(cwd), "--"]
            cmd += _user_prefix() + argv
        else:
            info_r, info_w = os.pipe()
            cmd = _keeper_prefix(info_w) + _user_prefix() + argv
        nproc_base = _count_processes(sandbox_uid())
        # RLIMIT_NPROC counts the user's tasks, this program's and others': gradings side by side (labs in
        # make grade, the proof in make test) grow after this count was taken, so the limit leaves them room;
        # the watchdog holds this program's own tree to limits.processes
        self._nproc_limit = nproc_base + limits.processes + CONCURRENT_TASKS

        def preexec() -> None:
            os.setpgid(0, 0)
            lim = [
                (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1),
                (resource.RLIMIT_NPROC, self._nproc_limit, self._nproc_limit),
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
                pass_fds=[info_w] if self._bwrap else [info_w, _life_fd()],
                preexec_fn=preexec,
            )
        finally:
            if info_w >= 0:
                os.close(info_w)
        self.out = _Reader(os.dup(self.popen.stdout.fileno()), self.cond, self._flood)
        self.err = _Reader(os.dup(self.popen.stderr.fileno()), self.cond, self._flood)
        self.popen.stdout.close()
        self.popen.stderr.close()
        self.out.start()
        self.err.start()
        self.result: Exit | None = None
        self.state_at_timeout: diagnose.ProcState | None = None
        self._ns_pid = 0  # with bwrap: its process inside the namespace, whose root shows the private /tmp
        _live.add(self)
        self.pid = self._find_program_pid(info_r)
        # Without bwrap the program shares /tmp, /var/tmp and /dev/shm: what it makes there counts too.
        self._shared_before = set() if self._bwrap else set(shared_tmp_entries(sandbox_uid()))
        self._watch_stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _find_program_pid(self, info_r: int) -> int:
        """The host PID of the program itself (inside bwrap it is the reaper's child; the keeper says it)."""
        with os.fdopen(info_r, "rb") as f:
            data = f.read()
        try:
            info = json.loads(data)
            if not self._bwrap:
                return int(info["program-pid"])
            reaper = int(info["child-pid"])
            self._ns_pid = reaper
        except (ValueError, KeyError, TypeError):
            # bwrap or the keeper failed before it started the program: a setup problem, never the student's
            self.popen.wait()
            self.err.join(timeout=5)
            what = "bwrap" if self._bwrap else "the keeper"
            why = clean_text(bytes(self.err.buf)).strip() or f"{what} exited with status {self.popen.returncode}"
            raise SandboxError(f"the sandbox could not start `{Path(self.popen.args[-1]).name}`: {why}")
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

    # --- the watchdog: memory, disk and processes of the whole tree ----------------
    def _watch(self) -> None:
        own = 2 if self._bwrap else 1  # bwrap and its init, or the keeper: the sandbox's, not the program's
        while not self._watch_stop.wait(WATCH_PERIOD):
            if self.popen.poll() is not None:
                return
            why = None
            # Also what called setsid(): it stays below bwrap or the keeper.  The walk stops at the limit: a
            # fork loop's hundreds of processes spin on fork() and leave this thread little of the CPU, so a
            # look must cost as little as the verdict needs (a whole walk took it seconds to see the limit).
            pids = tree_pids(self.popen.pid, limit=own + self.limits.processes)
            if len(pids) - own >= self.limits.processes or (
                    len(pids) - own >= self.limits.processes // 2
                    and _count_processes(sandbox_uid()) >= self._nproc_limit):
                # fork() fails with EAGAIN at RLIMIT_NPROC, which the program may ignore and loop on; the
                # limit counts the user's other tasks too (another sandbox's, QEMU's threads as nobody)
                why = (f"it started as many processes as it may run at once (the limit of {self.limits.processes} "
                       f"processes): a fork loop?")
            elif (rss := pids_rss(pids)) > self.limits.memory:
                why = (f"its processes used more than {self.limits.memory >> 20} MiB of memory "
                       f"({rss >> 20} MiB resident)")
            else:
                used, files = disk_usage(self.writable + self._shared_new(MAX_WATCHED_FILES + 1), MAX_WATCHED_FILES)
                tmp_used, tmp_files = self._private_tmp_usage()
                used, files = used + tmp_used, files + tmp_files
                if used > self.limits.disk:
                    why = f"it wrote more than {self.limits.disk >> 20} MiB to disk"
                elif files > MAX_WATCHED_FILES:
                    why = f"it created more than {MAX_WATCHED_FILES} files"
            if why:
                self.killed_for = why
                self.kill_all()
                return

    def _private_tmp_usage(self) -> tuple[int, int]:
        """(bytes, files) in the sandbox's own /tmp and /dev/shm (with bwrap: tmpfs seen through its root)."""
        used = files = 0
        if not self._ns_pid:
            return 0, 0
        for d in PRIVATE_TMP:
            try:
                st = os.statvfs(f"/proc/{self._ns_pid}/root{d}")
            except OSError:
                continue
            used += (st.f_blocks - st.f_bfree) * st.f_frsize
            files += max(0, st.f_files - st.f_ffree - 1)  # the folder itself is not the program's
        return used, files

    def _shared_new(self, limit: int | None = None) -> list[Path]:
        """What the program made in the shared temporary folders (only without bwrap)."""
        if self._bwrap:
            return []
        return shared_tmp_entries(sandbox_uid(), skip=self._shared_before, limit=limit)

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

    def signal(self, sig: int, code: int | None = None) -> bool:
        """Send sig to the program (with `code`, a negative si_code, by rt_sigqueueinfo(2), as a source
        other than kill would); False when it had already ended (the signal reached nobody).

        The program must be alive when the signal is sent: a process that has exited (a zombie
        or gone) ignores signals silently, so a test that means "after the signal" would
        otherwise credit output printed before it."""
        if process_state(self.pid) in (None, "Z", "X", "x"):
            return False
        try:
            if code is None:
                os.kill(self.pid, sig)
            else:
                queue_signal(self.pid, sig, code)
        except ProcessLookupError:
            return False
        return True

    def stdout_snapshot(self) -> bytes:
        with self.cond:
            return bytes(self.out.buf)

    def running(self) -> bool:
        return self.popen.poll() is None

    def kill_all(self) -> None:
        """Kill the sandbox and everything in it."""
        if not self._bwrap:
            # The program's session, then the keeper, which kills what is left below it and exits.
            for kill, target, sig in ((os.killpg, self.pid, signal.SIGKILL), (os.kill, self.popen.pid, signal.SIGTERM)):
                try:
                    if self.popen.poll() is None:
                        kill(target, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            return
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
            self.state_at_timeout = diagnose.snapshot(self.pid)  # before the kill: where was it?
        self.kill_all()  # stragglers: children left in the background
        try:
            self.popen.wait(timeout=2 * keeper.SWEEP_SECONDS)
        except subprocess.TimeoutExpired:
            self.popen.kill()  # a keeper that could not sweep (a process stuck in the kernel)
            self.popen.wait()
        self._watch_stop.set()
        _live.discard(self)
        if not self._bwrap and _running_as_root() and sandbox_user()[0] != "nobody":
            for e in self._shared_new():  # the dedicated user's files of this run: nobody else's
                shutil.rmtree(e, ignore_errors=True) if e.is_dir() and not e.is_symlink() else e.unlink(missing_ok=True)
        self.close_stdin()
        self.out.join(timeout=5)
        self.err.join(timeout=5)
        code = self.popen.returncode
        ex = Exit(timed_out=timed_out and self.killed_for is None, flooded=self._killed_for_flood,
                  stdout=bytes(self.out.buf), stderr=bytes(self.err.buf), killed_for=self.killed_for,
                  state=self.state_at_timeout)
        if not ex.timed_out and not ex.flooded and ex.killed_for is None:
            # bwrap and the keeper exit with the program's status, or 128+N when a signal killed it
            ex.exitcode, ex.signal = _decode_bwrap_status(code, ex.stderr)
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


_live: "weakref.WeakSet[Contained]" = weakref.WeakSet()


def kill_everything() -> None:
    """Kill every contained program still running (the grader is being stopped)."""
    for c in list(_live):
        c.kill_all()


_life: tuple[int, int] | None = None


def _life_fd() -> int:
    """The read end of a pipe whose write end only this process holds: every keeper watches it and
    kills its program's tree when it reaches end of file (this process is gone, however it ended)."""
    global _life
    if _life is None:
        _life = os.pipe()  # both ends close-on-exec: no other child inherits the write end
    return _life[0]


def _keeper_prefix(info_fd: int) -> list[str]:
    """Without bwrap: the keeper (keeper.py) runs the program in a session of its own and kills all it
    leaves, when it ends, when kill_all() asks, and when the grader dies."""
    return [sys.executable, "-I", "-S", keeper.__file__, str(_life_fd()), str(info_fd), "--"]


def process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, D, T, Z...), or None when there is no such process."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return stat_line.rsplit(")", 1)[1].split()[0]
    except IndexError:
        return None


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                kids += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return kids


def tree_pids(root: int, limit: int = 4096) -> list[int]:
    """root and every process below it."""
    seen, todo = [], [root]
    while todo and len(seen) < limit:
        p = todo.pop()
        seen.append(p)
        todo.extend(_children(p))
    return seen


def tree_rss(root: int) -> int:
    """Bytes resident in the process tree under root (the sandbox's own bwrap processes included)."""
    return pids_rss(tree_pids(root))


def pids_rss(pids: list[int]) -> int:
    """Bytes resident in these processes."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for p in pids:
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
    return total


SHARED_TMP = ["/tmp", "/var/tmp", "/dev/shm"]


def shared_tmp_entries(uid: int, skip: set[Path] | None = None, limit: int | None = None) -> list[Path]:
    """The entries at the top of the world-writable temporary folders that belong to uid (but those in
    `skip`), at most `limit` of them: a program that makes a million files in /tmp must not make each of
    the watchdog's looks as slow as the files are many."""
    found: list[Path] = []
    for d in SHARED_TMP:
        try:
            with os.scandir(d) as it:
                for e in it:
                    try:
                        if e.stat(follow_symlinks=False).st_uid == uid and (skip is None or Path(e.path) not in skip):
                            found.append(Path(e.path))
                    except OSError:
                        pass
                    if limit is not None and len(found) >= limit:
                        return found
        except OSError:
            pass
    return found


def disk_usage(folders: list[Path], max_files: int) -> tuple[int, int]:
    """(bytes allocated, number of entries) under the folders (a file among them counts itself), counting
    at most max_files + 1 entries."""
    used = count = 0
    todo = []
    for f in folders:
        try:
            st = os.lstat(f)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            todo.append(str(f))
        else:
            used += st.st_blocks * 512
            count += 1
    while todo and count <= max_files:
        d = todo.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    count += 1
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    used += st.st_blocks * 512
                    if e.is_dir(follow_symlinks=False):
                        todo.append(e.path)
                    if count > max_files:
                        break
        except OSError:
            pass
    return used, count


def read_untrusted(path: Path, limit: int = 1 << 20) -> bytes | None:
    """The first `limit` bytes of a file a contained program could have made or replaced, or None.

    Never follows a link (O_NOFOLLOW), never blocks on a FIFO (O_NONBLOCK), and reads only a
    regular file owned by the sandbox's user or by us: a program cannot make the grader quote
    /etc/shadow, or hang it on a pipe, by putting something else in the file's place."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (sandbox_uid(), os.geteuid()):
            return None
        chunks, left = [], limit
        while left > 0:
            b = os.read(fd, min(left, 65536))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


# Every control character but newline and tab: escape sequences (CSI, OSC), C1 controls,
# carriage returns, backspaces, BEL and NUL could redraw or garble the grader's table.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def inert(text: str) -> str:
    """Text from outside the grader, safe to show on a terminal: every control character but
    newline and tab is written as an escape (\\x1b), so it cannot move the cursor, clear the
    screen or reorder the text."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", text)


def clean_text(b: bytes) -> str:
    """Bytes from a student's program (or the kernel) as inert, printable text."""
    return inert(b.decode("utf-8", "replace"))
