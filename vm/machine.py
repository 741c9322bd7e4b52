"""Drive the workbook VM from Python tests: boot, run commands, read the kernel log.

    from vm.machine import Machine, VMError
    with Machine(files={"/lab/hello.ko": Path("build/hello.ko")}) as m:
        r = m.run("insmod /lab/hello.ko", timeout=10.0)
        assert r.status == 0, r.stderr
        assert "hello" in m.kernel_log()
        assert m.oops() is None

The VM is QEMU's microvm (KVM when /dev/kvm can be opened read-write, else TCG)
booting the cached Debian vmlinux through PVH with an initramfs built at every
boot (vm/initramfs.py). The kernel console (ttyS0) and the command channel
(ttyS1, served by vm/agent.c) are two socketpairs handed to QEMU, so no
temporary files or ports are used. One I/O thread reads both; it always takes
what the console already has before reading an agent reply, so after run()
returns, everything the command made the kernel print at WARNING level or above
is in the console log.

QEMU is killed when the with-block ends (after a clean poweroff when there was
no exception), when the Machine is garbage-collected, at interpreter exit, and
through PR_SET_PDEATHSIG when the Python process dies of a signal (SIGTERM,
SIGKILL). Create a Machine from the thread that will outlive it (the death
signal is tied to the thread that started QEMU). A Machine is not thread-safe.

Every failure is a VMError subclass with a one-line message.
"""
from __future__ import annotations

import ctypes
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Union

from vm import fetch, initramfs

QEMU = "qemu-system-x86_64"
NOBODY = 65534  # the user QEMU runs as when the grader is root
# loglevel=5: WARNING and above reach the console (oops detection reads it);
# mitigations=off, cryptomgr.notests=1, pci=off: faster boot; panic=-1 with
# -no-reboot: a panic ends QEMU at once instead of hanging.
# panic_on_unrecovered_nmi: an NMI the grader injects into a hung kernel (Machine._died) makes it panic
# with a backtrace of where the CPU was stuck, even with interrupts off.
KERNEL_CMDLINE = "console=ttyS0 loglevel=5 mitigations=off cryptomgr.notests=1 pci=off panic=-1 sysctl.kernel.panic_on_unrecovered_nmi=1"
# rtc=on: without the CMOS clock, rtc_cmos's probe costs a whole second of boot.
MACHINE = "microvm,rtc=on"
# Under TCG: ARAT (the local APIC timer keeps running in idle states) lets the
# kernel switch the APIC timer to one-shot mode, so hrtimers are high
# resolution (without it, microvm has no broadcast timer and every hrtimer
# waits for the next 4 ms tick).
TCG_CPU = "qemu64,+arat"
# microvm's firmware, named so that every host boots the same one: qboot, which QEMU's own data files
# carry (qemu-system-data). Left to itself, Debian 13's QEMU 10.0 finds SeaBIOS's microvm build
# (/usr/share/seabios/bios-microvm.bin) under the default name first, and with it most PVH boots of
# the guest end before the kernel prints a line (QEMU exits with status 0); with qboot every one
# boots. Debian 12's QEMU 7.2 links the default name to qboot.rom itself.
MICROVM_FIRMWARE = "qboot.rom"
OUTPUT_CAP = 1 << 20  # bytes of stdout and of stderr kept per command
KILL_GRACE = 2.0  # the agent's wait after SIGKILL (agent.c KILL_GRACE_MS)
REPLY_SLACK = 5.0  # how long the host waits for the agent beyond that (then the kernel gets an NMI)
UPLOAD_RATE = 50_000  # bytes/s assumed when computing an upload's deadline

Data = Union[bytes, str, Path]


class VMError(Exception):
    """Base of every error from the VM; str() is a one-line message."""


class VMSetupError(VMError):
    """QEMU, the kernel or the initramfs is missing or broken."""


class BootError(VMError):
    """The VM did not reach the point where the agent answers."""


class CommandTimeout(VMError):
    """A command ran past its timeout and was killed; .result holds what it printed."""

    def __init__(self, message: str, result: "CmdResult") -> None:
        super().__init__(message)
        self.result = result


class CommandFailed(VMError):
    """Machine.check(): the command did not exit with status 0."""

    def __init__(self, message: str, result: "CmdResult") -> None:
        super().__init__(message)
        self.result = result


class VMDied(VMError):
    """The VM stopped answering (kernel panic, hang, agent gone)."""


class UploadError(VMError):
    """The agent could not write a file."""


@dataclass
class CmdResult:
    status: int | None  # exit status, or None when killed by a signal
    signal: int | None  # the terminating signal, or None
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool  # stdout or stderr went past the cap
    command: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 0

    def describe(self) -> str:
        """'exit status 1', 'killed by SIGSEGV', ..."""
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}"
        if self.status is None:
            return "not finished"
        return f"exit status {self.status}"


# ----------------------------------------------------------------- helpers

def short(cmd: str, width: int = 60) -> str:
    """A command on one line, shortened for messages."""
    one = " ".join(cmd.split())
    return one if len(one) <= width else one[: width - 1] + "…"


_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")


def last_lines(text: str, n: int = 3, width: int = 300) -> str:
    """The last n non-empty lines without timestamps, joined on one line."""
    lines = [_TIMESTAMP.sub("", l).strip() for l in text.splitlines()]
    tail = " / ".join([l for l in lines if l][-n:])
    if len(tail) > width:
        tail = "…" + tail[-(width - 1):]
    return tail or "(nothing)"


OOPS_START = re.compile(
    r"(Oops|BUG:|WARNING:|Kernel panic|general protection fault|Unable to handle kernel|"
    r"kernel BUG at|watchdog: BUG:|INFO: task .* blocked|UBSAN:|KASAN:|list_add corruption|"
    r"list_del corruption|refcount_t:|stack-protector:)"
)
CUT_HERE = "------------[ cut here ]------------"
OOPS_END = re.compile(r"---\[ end (trace|Kernel panic)")


def find_oops(log: str) -> str | None:
    """From the first line of an Oops/BUG/WARNING/panic to its end-of-trace line.

    The taint notices for unsigned or out-of-tree modules are not oopses.
    """
    lines = log.splitlines()
    for i, line in enumerate(lines):
        body = _TIMESTAMP.sub("", line)
        if not OOPS_START.match(body):
            continue
        start = i - 1 if i > 0 and CUT_HERE in lines[i - 1] else i
        end = len(lines)
        for j in range(i, len(lines)):
            if OOPS_END.search(lines[j]):
                end = j + 1
                break
        return "\n".join(lines[start:end])
    return None


_kvm_ok: bool | None = None


def kvm_usable(qemu: str = QEMU) -> bool:
    """Whether QEMU can run this VM under KVM here.

    /dev/kvm opening read-write is not enough: under some nested hypervisors
    KVM refuses the MSRs that `-cpu host` sets and QEMU aborts at start
    ("kvm_buf_set_msrs: Assertion ... failed"). So QEMU is started once,
    stopped (-S), with the same machine and CPU, and told to quit; the answer
    is kept per host boot in vm/cache/build/kvm.txt. WORKBOOK_ACCEL=tcg (or
    kvm) overrides the probe.
    """
    global _kvm_ok
    forced = os.environ.get("WORKBOOK_ACCEL", "")
    if forced in ("tcg", "kvm"):
        return forced == "kvm"
    if _kvm_ok is not None:
        return _kvm_ok
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        _kvm_ok = False
        return False
    os.close(fd)
    boot_id = _boot_id()
    memo = initramfs.BUILD / "kvm.txt"
    try:
        key, value = memo.read_text().split()
        if key == boot_id:
            _kvm_ok = value == "yes"
            return _kvm_ok
    except (OSError, ValueError):
        pass
    path = shutil.which(qemu)
    if path is None:
        return False  # find_qemu() says what to do
    try:
        res = subprocess.run([path, "-M", MACHINE, "-accel", "kvm", "-cpu", "host", "-m", "64", "-nodefaults",
                              "-no-user-config", "-display", "none", "-S", "-monitor", "stdio"],
                             input=b"quit\n", capture_output=True, timeout=20)
        _kvm_ok = res.returncode == 0
    except (OSError, subprocess.SubprocessError):
        _kvm_ok = False
    try:
        initramfs.BUILD.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".{os.getpid()}")
        tmp.write_text(f"{boot_id} {'yes' if _kvm_ok else 'no'}\n")
        os.replace(tmp, memo)
    except OSError:
        pass
    return _kvm_ok


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def find_qemu(qemu: str = QEMU) -> str:
    path = shutil.which(qemu)
    if path is None:
        raise VMSetupError(f"{qemu} not found: run `make deps`")
    return path


_firmware: dict[str, str | None] = {}


def microvm_firmware(qemu: str) -> str | None:
    """The path of qboot in QEMU's own data folders (`qemu -L help`), or None when this QEMU has none
    (then the VM boots QEMU's default firmware). Asked once per QEMU binary and process."""
    if qemu not in _firmware:
        # QEMU's first data folder is BINDIR/../share/qemu: found there, no QEMU needs to start to say so.
        first = Path(qemu).resolve().parent.parent / "share" / "qemu" / MICROVM_FIRMWARE
        if first.is_file():
            _firmware[qemu] = str(first)
            return _firmware[qemu]
        try:
            folders = subprocess.run([qemu, "-L", "help"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            folders = ""
        found = (Path(d) / MICROVM_FIRMWARE for d in folders.splitlines() if d.strip())
        _firmware[qemu] = next((str(f.resolve()) for f in found if f.is_file()), None)
    return _firmware[qemu]


def kernel_cache() -> Path:
    """The complete vm/cache/<version> folder, or a one-line error (never downloads)."""
    version = fetch.recorded_version()
    if version is None or not fetch.is_complete(fetch.CACHE / version):
        raise VMSetupError(f"the VM kernel is not fetched: run `make fetch{fetch.make_arg()}` (needs network once)")
    return fetch.CACHE / version


def qemu_command(qemu: str, kernel: Path, initrd: str, cmdline: str, serial: list[str],
                 memory_mb: int = 256, accel: str = "auto") -> list[str]:
    """The QEMU command line shared by Machine and vm/shell.py."""
    if accel == "auto":
        accel = "kvm" if kvm_usable() else "tcg"
    cpu = ["-cpu", "host"] if accel == "kvm" else ["-cpu", TCG_CPU]
    if accel == "tcg" and "tsc_early_khz=" not in cmdline:
        khz = host_tsc_khz()
        if khz:
            # tsc=reliable: use the TSC as a high-resolution clocksource at
            # once, instead of after the second-long refinement (until then
            # hrtimers tick at 4 ms and the board's bursts are slow).
            cmdline = f"{cmdline} tsc_early_khz={khz} tsc=reliable"
    firmware = microvm_firmware(qemu)
    bios = ["-bios", firmware] if firmware else []
    return [qemu, "-M", MACHINE, *bios, "-accel", accel, *cpu, "-m", str(memory_mb), "-smp", "1",
            "-nodefaults", "-no-user-config", "-vga", "none", "-nic", "none", "-display", "none",
            *serial, "-kernel", str(kernel), "-initrd", initrd, "-append", cmdline, "-no-reboot"]


_tsc_khz: int | None = None


def host_tsc_khz() -> int | None:
    """The host's TSC frequency (= the TCG guest's), measured by vm/tsckhz.c.

    The guest's own calibration against the emulated PIT fails now and then
    under TCG ("tsc: Unable to calibrate against PIT") and the boot hangs; with
    tsc_early_khz= it never calibrates. Cached per host boot in vm/cache/build.
    None (and the guest calibrates) when the helper cannot be built.
    """
    global _tsc_khz
    if _tsc_khz is not None:
        return _tsc_khz
    boot_id = _boot_id()
    memo = initramfs.BUILD / "tsckhz.txt"
    try:
        key, value = memo.read_text().split()
        if key == boot_id:
            _tsc_khz = int(value)
            return _tsc_khz
    except (OSError, ValueError):
        pass
    try:
        exe = initramfs.host_tool("tsckhz")
        value = subprocess.run([str(exe)], capture_output=True, text=True, timeout=10, check=True).stdout
        _tsc_khz = int(value)
    except (initramfs.InitramfsError, subprocess.SubprocessError, ValueError, OSError):
        return None
    tmp = memo.with_suffix(f".{os.getpid()}")
    tmp.write_text(f"{boot_id} {_tsc_khz}\n")
    os.replace(tmp, memo)
    return _tsc_khz


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL us when the parent (thread) dies."""
    parent = os.getppid()
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


def start_qemu(argv: list[str], pass_fds: tuple[int, ...] = (), **kw) -> subprocess.Popen:
    """Start QEMU; it dies with the calling thread.  As root, QEMU itself runs as `nobody` (setpriv, which
    sets the death signal again after the change of user clears it): a guest that escaped QEMU would not
    be root on the host.  The kernel is then handed over as an open file (/dev/fd/N), since nobody may not
    be able to traverse the folders of a clone under /root."""
    kernel_fd = -1
    if os.geteuid() == 0 and shutil.which("setpriv"):
        argv = list(argv)
        if "-kernel" in argv:
            i = argv.index("-kernel") + 1
            if not argv[i].startswith("/dev/fd/"):
                kernel_fd = os.open(argv[i], os.O_RDONLY | os.O_CLOEXEC)
                argv[i] = f"/dev/fd/{kernel_fd}"
                pass_fds = (*pass_fds, kernel_fd)
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--pdeathsig", "SIGKILL",
                "--", *argv]
    try:
        return subprocess.Popen(argv, pass_fds=pass_fds, preexec_fn=_die_with_parent, **kw)
    except FileNotFoundError:
        raise VMSetupError(f"{argv[0]} not found: run `make deps`") from None
    except OSError as e:
        raise VMSetupError(f"cannot start {argv[0]}: {e.strerror}") from None
    finally:
        if kernel_fd >= 0:
            os.close(kernel_fd)


def make_initrd(files: Mapping[str, initramfs.Source], busybox: Path) -> int:
    """The initramfs in a memfd (QEMU opens it as /dev/fd/N); returns the fd."""
    fd = os.memfd_create("workbook-initrd", 0)  # not CLOEXEC-free: passed with pass_fds
    try:
        with open(fd, "wb", closefd=False) as f:
            initramfs.write(f, files, busybox=busybox)
    except initramfs.InitramfsError as e:
        os.close(fd)
        raise VMSetupError(str(e)) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


# ----------------------------------------------------------------- the I/O thread

HDR = struct.Struct("<2sBBI")


class _Link:
    """Reads the console and the agent's frames in a background thread."""

    def __init__(self, console: socket.socket, agent: socket.socket, stderr, console_log: Path | None) -> None:
        self.console_sock = console
        self.agent_sock = agent
        self.stderr = stderr
        self.console = bytearray()
        self.qemu_stderr = bytearray()
        self.frames: deque[tuple[str, bytes]] = deque()
        self.closed = False  # the agent channel reached EOF (QEMU exited)
        self.cond = threading.Condition()
        self._buf = bytearray()
        self._tee = open(console_log, "ab") if console_log else None
        self._stop_r, self._stop_w = os.pipe()
        self.thread = threading.Thread(target=self._loop, name="vm-io", daemon=True)
        self.thread.start()

    def _console_data(self, data: bytes) -> None:
        with self.cond:
            self.console += data
            self.cond.notify_all()
        if self._tee:
            self._tee.write(data)
            self._tee.flush()

    def _drain_console(self) -> None:
        while True:
            try:
                data = self.console_sock.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
                return
            self._console_data(data)

    def _agent_data(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        got = []
        while len(buf) >= HDR.size:
            at = buf.find(b"WB")
            if at < 0:
                del buf[:-1]
                break
            if at > 0:
                del buf[:at]
                continue
            if len(buf) < HDR.size:
                break
            _, ftype, _, length = HDR.unpack_from(buf)
            if len(buf) < HDR.size + length:
                break
            got.append((chr(ftype), bytes(buf[HDR.size:HDR.size + length])))
            del buf[:HDR.size + length]
        if got:
            with self.cond:
                self.frames.extend(got)
                self.cond.notify_all()

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.console_sock, selectors.EVENT_READ, "console")
        sel.register(self.agent_sock, selectors.EVENT_READ, "agent")
        sel.register(self._stop_r, selectors.EVENT_READ, "stop")
        if self.stderr is not None:
            sel.register(self.stderr, selectors.EVENT_READ, "stderr")
        open_ = {"console", "agent", "stderr"} if self.stderr is not None else {"console", "agent"}
        try:
            while open_:
                events = sel.select()
                kinds = {key.data for key, _ in events}
                if "stop" in kinds:
                    return
                # The console first: what the kernel printed before an agent
                # reply must be in the log when the reply is delivered.
                for kind in ("console", "stderr", "agent"):
                    if kind not in kinds:
                        continue
                    if kind == "agent":
                        self._drain_console()
                    try:
                        if kind == "stderr":
                            data = os.read(self.stderr.fileno(), 65536)
                        else:
                            sock = self.console_sock if kind == "console" else self.agent_sock
                            data = sock.recv(65536, socket.MSG_DONTWAIT)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        open_.discard(kind)
                        sel.unregister(self.stderr if kind == "stderr" else
                                       self.console_sock if kind == "console" else self.agent_sock)
                        if kind == "agent":
                            self._drain_console()
                            with self.cond:
                                self.closed = True
                                self.cond.notify_all()
                        continue
                    if kind == "console":
                        self._console_data(data)
                    elif kind == "stderr":
                        with self.cond:
                            self.qemu_stderr += data
                    else:
                        self._agent_data(data)
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()
            sel.close()

    def wait_frame(self, deadline: float) -> tuple[str, bytes] | None:
        """The next frame, or None on EOF or when the deadline passes."""
        with self.cond:
            while not self.frames:
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    return None
                self.cond.wait(left)
            return self.frames.popleft()

    def console_text(self) -> str:
        with self.cond:
            return self.console.decode(errors="replace").replace("\r\n", "\n")

    def stop(self) -> None:
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass
        self.thread.join(5)
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        if self._tee:
            self._tee.close()


# ----------------------------------------------------------------- the machine

def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


class Machine:
    """One VM: boots on start() or `with`, runs commands, powers off on close()."""

    def __init__(self, files: Mapping[str, Union[Path, bytes]] | None = None, *, boot_timeout: float = 60.0,
                 memory_mb: int = 256, cmdline: str = "", accel: str = "auto", kernel: Path | None = None,
                 qemu: str = QEMU, console_log: Path | None = None, output_cap: int = OUTPUT_CAP) -> None:
        self.files = dict(files or {})
        self.boot_timeout = boot_timeout
        self.memory_mb = memory_mb
        self.cmdline = cmdline
        self.accel = accel
        self.kernel = kernel
        self.qemu = qemu
        self.console_log = console_log
        self.output_cap = output_cap
        self.proc: subprocess.Popen | None = None
        self.boot_seconds: float | None = None  # QEMU start to agent ready
        self._link: _Link | None = None
        self._tx: socket.socket | None = None
        self._last_cmd: str | None = None
        self._dead: str | None = None  # why the VM is gone, once it is
        self._finalizer: weakref.finalize | None = None

    # -- lifecycle

    def __enter__(self) -> "Machine":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(graceful=exc_type is None)

    def start(self) -> "Machine":
        """Boot and wait for the agent; raises BootError or VMSetupError."""
        if self.proc is not None:
            raise VMError("this Machine was already started")
        qemu = find_qemu(self.qemu)
        cache = kernel_cache() if self.kernel is None else None
        kernel = self.kernel if self.kernel is not None else cache / "vmlinux"  # type: ignore[operator]
        if not kernel.is_file():
            raise VMSetupError(f"kernel not found: {kernel}: run `python3 vm/fetch.py`")
        busybox = (cache or kernel_cache()) / "busybox"
        initrd = make_initrd(self.files, busybox)
        con_host, con_qemu = socket.socketpair()
        cmd_host, cmd_qemu = socket.socketpair()
        self._mon, mon_qemu = socket.socketpair()  # QEMU's monitor: an NMI for a kernel that hangs
        argv = qemu_command(qemu, kernel, f"/dev/fd/{initrd}", f"{KERNEL_CMDLINE} {self.cmdline}".strip(),
                            ["-chardev", f"socket,id=con,fd={con_qemu.fileno()}", "-serial", "chardev:con",
                             "-chardev", f"socket,id=cmd,fd={cmd_qemu.fileno()}",
                             "-device", "isa-serial,chardev=cmd,index=1",
                             "-chardev", f"socket,id=mon,fd={mon_qemu.fileno()}", "-mon", "chardev=mon,mode=readline"],
                            self.memory_mb, self.accel)
        t0 = time.monotonic()
        try:
            self.proc = start_qemu(argv, (initrd, con_qemu.fileno(), cmd_qemu.fileno(), mon_qemu.fileno()),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        finally:
            for s in (con_qemu, cmd_qemu, mon_qemu):
                s.close()
        self._finalizer = weakref.finalize(self, _kill, self.proc)
        self._link = _Link(con_host, cmd_host, self.proc.stderr, self.console_log)
        self._tx = cmd_host.dup()
        try:
            self._wait_ready(t0)
        except BaseException:
            os.close(initrd)
            self.close(graceful=False)
            raise
        os.close(initrd)
        self.boot_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, t0: float) -> None:
        assert self._link is not None and self.proc is not None
        deadline = t0 + self.boot_timeout
        while True:
            frame = self._link.wait_frame(deadline)
            if frame is not None and frame[0] == "Y":
                return
            if frame is not None:
                continue
            console = self._link.console_text()
            if self._link.closed or self.proc.poll() is not None:
                try:
                    status = self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    status = None
                err = self._link.qemu_stderr.decode(errors="replace").strip()
                if err and status not in (0, None):
                    raise BootError(f"QEMU failed to start the VM (status {status}): {err.splitlines()[-1]}")
                raise BootError(f"the VM stopped while booting; kernel log tail: {last_lines(console)}")
            raise BootError(f"VM did not boot within {self.boot_timeout:g} s "
                            f"(last console line: {last_lines(console, 1)})")

    def close(self, graceful: bool = True) -> None:
        """Power off (when graceful and the agent is there), then make sure QEMU is gone."""
        if self.proc is None:
            return
        if graceful and self._dead is None and self.proc.poll() is None:
            try:
                self._send("Q", b"")
                self.proc.wait(5)
            except (VMError, OSError, subprocess.TimeoutExpired):
                pass
        _kill(self.proc)
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._link is not None:
            self._link.stop()
            for s in (self._link.console_sock, self._link.agent_sock):
                s.close()
        if self._tx is not None:
            self._tx.close()
        if getattr(self, "_mon", None) is not None:
            self._mon.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self._dead = self._dead or "it was powered off"

    poweroff = close

    # -- the agent protocol

    def _send(self, ftype: str, payload: bytes, timeout: float = 30.0) -> None:
        assert self._tx is not None
        self._tx.settimeout(timeout)
        try:
            self._tx.sendall(HDR.pack(b"WB", ord(ftype), 0, len(payload)) + payload)
        except socket.timeout:
            raise self._died("did not take the request") from None
        except OSError:
            raise self._died("is gone") from None

    def _died(self, what: str) -> VMDied:
        """Mark the VM dead, kill QEMU, and describe what was running.  A kernel that still runs but no
        longer answers (a deadlock, a loop with interrupts off) first gets an NMI: with
        panic_on_unrecovered_nmi it panics and prints where the CPU was stuck, which the excerpt then shows."""
        assert self.proc is not None and self._link is not None
        after = f" after command `{short(self._last_cmd)}`" if self._last_cmd else ""
        if self.proc.poll() is None and find_oops(self._link.console_text()) is None:
            self._nmi()
        if self.proc.poll() is None:
            _kill(self.proc)
        console = self._link.console_text()
        oops = find_oops(console)
        tail = last_lines(oops) if oops else last_lines(console)
        self._dead = f"the VM stopped answering{after}"
        return VMDied(f"the VM stopped answering{after} (agent {what}); kernel log tail: {tail}")

    def _nmi(self, wait: float = 5.0) -> None:
        """Inject an NMI through QEMU's monitor; wait until the panic it causes has been printed."""
        try:
            self._mon.settimeout(2.0)
            self._mon.sendall(b"nmi\n")
        except OSError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and self.proc.poll() is None:
            if re.search(r"---\[ end Kernel panic", self._link.console_text()):
                break
            time.sleep(0.05)

    def _check_running(self) -> None:
        if self.proc is None:
            raise VMError("the Machine is not started (use `with Machine(...) as m:` or m.start())")
        if self._dead is not None:
            raise VMDied(f"the VM is not running: {self._dead}")

    def _run_raw(self, cmd: str, timeout: float, cap: int) -> tuple[int, int, int, bytes, bytes]:
        """(how, flags, value, stdout, stderr) of one command."""
        self._check_running()
        assert self._link is not None
        self._last_cmd = cmd
        payload = struct.pack("<II", max(0, int(timeout * 1000)) if timeout else 0, cap) + cmd.encode()
        self._send("R", payload)
        out, err = bytearray(), bytearray()
        wait = (timeout + KILL_GRACE if timeout else 24 * 3600.0) + REPLY_SLACK
        deadline = time.monotonic() + wait
        while True:
            frame = self._link.wait_frame(deadline)
            if frame is None:
                if self._link.closed or self.proc.poll() is not None:  # type: ignore[union-attr]
                    raise self._died("is gone: QEMU exited")
                raise self._died(f"sent no reply within {wait:g} s")
            kind, data = frame
            deadline = max(deadline, time.monotonic() + REPLY_SLACK)  # output is still coming
            if kind == "O":
                out += data
            elif kind == "E":
                err += data
            elif kind == "X":
                how, flags, value = struct.unpack("<BBxxi", data)
                return how, flags, value, bytes(out), bytes(err)
            elif kind == "Y":
                raise self._died("restarted")

    def run(self, cmd: str, timeout: float = 10.0, *, allow_timeout: bool = False) -> CmdResult:
        """Run `cmd` with /bin/sh -c in the VM (cwd /lab, stdin /dev/null).

        A command that runs past `timeout` seconds is killed with its process
        group and raises CommandTimeout (with .result), unless allow_timeout,
        then the result has timed_out=True. timeout=0 waits forever.
        """
        how, flags, value, out, err = self._run_raw(cmd, timeout, self.output_cap)
        if how == 2:
            raise VMError(f"the agent could not start `{short(cmd)}`: {err.decode(errors='replace').strip()}")
        res = CmdResult(status=value if how == 0 else None, signal=value if how == 1 else None,
                        stdout=out.decode(errors="replace"), stderr=err.decode(errors="replace"),
                        timed_out=bool(flags & 1), truncated=bool(flags & 6), command=cmd)
        if res.timed_out and not allow_timeout:
            how_killed = "killed" if how != 3 else "and could not be killed: stuck in the kernel?"
            raise CommandTimeout(f"command `{short(cmd)}` did not finish within {timeout:g} s ({how_killed})", res)
        return res

    def check(self, cmd: str, timeout: float = 10.0) -> str:
        """Run `cmd`; return its stdout if it exited 0, else raise CommandFailed."""
        res = self.run(cmd, timeout)
        if not res.ok:
            detail = last_lines(res.stderr or res.stdout, 2, 200)
            raise CommandFailed(f"command `{short(cmd)}` failed ({res.describe()}): {detail}", res)
        return res.stdout

    def upload(self, guest_path: str, data: Data, mode: int = 0o644, timeout: float | None = None) -> None:
        """Write a file in the VM (binary-safe). `data` is bytes, text, or a host Path."""
        self._check_running()
        assert self._link is not None
        if isinstance(data, Path):
            data = data.read_bytes()
        elif isinstance(data, str):
            data = data.encode()
        path_b = guest_path.encode()
        if timeout is None:
            timeout = 10.0 + len(data) / UPLOAD_RATE
        self._last_cmd = f"upload {guest_path}"
        self._send("W", struct.pack("<II", mode, len(path_b)) + path_b + data, timeout)
        deadline = time.monotonic() + timeout
        while True:
            frame = self._link.wait_frame(deadline)
            if frame is None:
                raise self._died("did not confirm the upload" if not self._link.closed else "is gone: QEMU exited")
            if frame[0] == "K":
                code, = struct.unpack_from("<i", frame[1])
                if code:
                    raise UploadError(f"cannot write {guest_path} in the VM: {frame[1][4:].decode(errors='replace')}")
                return

    def download(self, guest_path: str, timeout: float = 30.0) -> bytes:
        """The bytes of a file in the VM (through `cat`; at most the output cap)."""
        how, flags, value, out, err = self._run_raw(f"cat '{guest_path}'", timeout, 1 << 30)
        if how != 0 or value != 0:
            raise VMError(f"cannot read {guest_path} in the VM: {err.decode(errors='replace').strip()}")
        return out

    def alive(self, timeout: float = 3.0) -> bool:
        """Whether the agent still answers a ping."""
        if self.proc is None or self._dead is not None or self.proc.poll() is not None:
            return False
        assert self._link is not None
        nonce = os.urandom(8)
        try:
            self._send("P", nonce, timeout)
        except VMDied:
            return False
        deadline = time.monotonic() + timeout
        while True:
            frame = self._link.wait_frame(deadline)
            if frame is None:
                return False
            if frame == ("p", nonce):
                return True

    # -- the kernel's messages

    def console(self) -> str:
        """What the kernel printed on the console (ttyS0) so far: WARNING and above."""
        return self._link.console_text() if self._link is not None else ""

    def kernel_log(self) -> str:
        """Everything the kernel printed so far: `dmesg` while the agent answers,
        else the console (which has only WARNING and above)."""
        if self.proc is not None and self._dead is None and self.proc.poll() is None:
            try:
                res = self.run("dmesg", timeout=10.0)
                if res.ok:
                    return res.stdout
            except VMError:
                pass
        return self.console()

    def oops(self) -> str | None:
        """None, or the first Oops/BUG/WARNING/panic report seen so far (an excerpt)."""
        return find_oops(self.console())

    def __repr__(self) -> str:
        state = "not started" if self.proc is None else (self._dead or "running")
        return f"<Machine {state}>"
