#!/usr/bin/env python3
"""Build the VM's initramfs: an uncompressed newc cpio archive, written in Python.

Contents:
    /init                  vm/init (busybox sh script)
    /bin/busybox           static busybox, with its applet links made here
    /bin/agent             vm/agent.c, compiled static (cached in vm/cache/build)
    /usr/bin/sigtrace      vm/sigtrace.c, compiled static: the kernel's record of signals
    /lib/x86_64-linux-gnu  the host's glibc loader and libc.so.6 (+ what the extra
                           files need, found from their DT_NEEDED entries), so
                           dynamically linked programs and LD_PRELOAD libraries run
    /dev/console           so the kernel has a console before devtmpfs is mounted
    /lab/...               the caller's extra files {guest_path: host_path | bytes}
                           (a host folder is copied recursively)

Uncompressed, because decompressing under TCG costs more than copying. The
glibc part costs about 2.1 MB (libc.so.6 1.9 MB, ld.so 0.2 MB).

Usage: vm/initramfs.py OUT.cpio [--file GUEST=HOST]... [--no-libc]
"""
from __future__ import annotations

import argparse
import os
import re
import stat
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Mapping, Union

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vm import fetch  # noqa: E402

HERE = Path(__file__).resolve().parent
AGENT_SRC = HERE / "agent.c"
INIT = HERE / "init"
BUILD = fetch.CACHE / "build"
LIB_DIR = "/lib/x86_64-linux-gnu"
HOST_LIB_DIRS = [Path("/lib/x86_64-linux-gnu"), Path("/usr/lib/x86_64-linux-gnu"), Path("/lib64"), Path("/usr/lib")]
LOADER = "ld-linux-x86-64.so.2"
BASE_LIBS = [LOADER, "libc.so.6", "libgcc_s.so.1"]  # libgcc_s: glibc dlopens it for pthread_exit()
AGENT_CFLAGS = ["-static", "-O2", "-s", "-Wall", "-Wextra", "-Werror"]

Source = Union[Path, bytes]


class InitramfsError(Exception):
    """A failure with a one-line message meant for the user."""


# ---------------------------------------------------------------- newc writer

@dataclass
class Entry:
    mode: int  # with the file type bits
    data: bytes = b""
    mtime: int = 0
    rdev: tuple[int, int] = (0, 0)


class CpioWriter:
    """Writes newc ("070701") entries; parents must be added before children."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.ino = 1
        self.size = 0

    def _put(self, b: bytes) -> None:
        self.out.write(b)
        self.size += len(b)

    def _pad(self) -> None:
        self._put(b"\0" * (-self.size % 4))

    def add(self, name: str, e: Entry) -> None:
        name_b = name.lstrip("/").encode() + b"\0"
        fields = [self.ino, e.mode, 0, 0, 2 if stat.S_ISDIR(e.mode) else 1, e.mtime, len(e.data),
                  0, 0, e.rdev[0], e.rdev[1], len(name_b), 0]
        self.ino += 1
        self._put(b"070701" + b"".join(b"%08X" % f for f in fields))
        self._put(name_b)
        self._pad()
        if e.data:
            self._put(e.data)
            self._pad()

    def finish(self) -> None:
        self._put(b"070701" + b"".join(b"%08X" % f for f in [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0]))
        self._put(b"TRAILER!!!\0")
        self._pad()


# ---------------------------------------------------------------- ELF helpers

def needed_libs(data: bytes) -> list[str]:
    """DT_NEEDED names of a 64-bit little-endian ELF (empty for anything else)."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads: list[tuple[int, int, int]] = []
    dyn: tuple[int, int] | None = None
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 56 > len(data):
            return []
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", data, off)
        if p_type == 1:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:
            dyn = (p_offset, p_filesz)
    if dyn is None:
        return []
    needed: list[int] = []
    strtab = None
    for off in range(dyn[0], min(dyn[0] + dyn[1], len(data) - 15), 16):
        tag, val = struct.unpack_from("<qQ", data, off)
        if tag == 0:
            break
        if tag == 1:
            needed.append(val)
        elif tag == 5:
            strtab = val
    if strtab is None:
        return []
    base = next((o + strtab - v for v, o, n in loads if v <= strtab < v + n), None)
    if base is None:
        return []
    names = []
    for n in needed:
        end = data.find(b"\0", base + n)
        names.append(data[base + n:end].decode(errors="replace"))
    return names


_SONAME = re.compile(r"(lib[A-Za-z0-9_+-][A-Za-z0-9._+-]*\.so|ld-linux[A-Za-z0-9_-]*\.so)(\.[0-9]+)*")


def find_host_lib(name: str) -> Path | None:
    """The host library a DT_NEEDED entry names, or None.

    The name comes from a student's binary: only a plain file name (no `/`, no `..`) is
    looked up, only inside the library folders, and only a regular file is taken, so a
    crafted entry cannot copy an arbitrary host file, a device or a FIFO into the VM."""
    if not _SONAME.fullmatch(name) or name in (".", ".."):
        return None
    for d in HOST_LIB_DIRS:
        p = d / name
        try:
            real = Path(os.path.realpath(p))
            st = os.stat(real)
        except OSError:
            continue
        inside = any(real.is_relative_to(os.path.realpath(x)) for x in HOST_LIB_DIRS)
        if inside and stat.S_ISREG(st.st_mode) and st.st_mode & 0o004:  # and anyone may read it
            return real
    return None


def library_closure(datas: list[bytes], have: set[str]) -> dict[str, Path]:
    """Host libraries (soname -> real file) that the given ELF images need, recursively."""
    found: dict[str, Path] = {}
    todo = [n for d in datas for n in needed_libs(d)]
    while todo:
        name = todo.pop()
        if name in have or name in found:
            continue
        path = find_host_lib(name)
        if path is None:
            continue  # the program will say which library is missing when it runs
        found[name] = path
        todo.extend(needed_libs(path.read_bytes()))
    return found


# ---------------------------------------------------------------- agent, busybox

def _compiled(name: str, cflags: list[str]) -> Path:
    """vm/NAME.c compiled into vm/cache/build/NAME, rebuilt when the source is newer."""
    src = HERE / f"{name}.c"
    out = BUILD / name
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    BUILD.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=BUILD)
    os.close(fd)
    try:
        res = subprocess.run(["gcc", *cflags, "-o", tmp, str(src)], capture_output=True, text=True)
    except FileNotFoundError:
        os.unlink(tmp)
        raise InitramfsError("gcc not found: run `make deps`")
    if res.returncode != 0:
        os.unlink(tmp)
        first = next((l for l in res.stderr.splitlines() if "error" in l), res.stderr.strip()[:200])
        raise InitramfsError(f"cannot build vm/{src.name}: {first}")
    os.replace(tmp, out)
    return out


def agent_binary() -> Path:
    """vm/agent.c compiled static, for the guest."""
    return _compiled("agent", AGENT_CFLAGS)


def sigtrace_binary() -> Path:
    """vm/sigtrace.c compiled static: the kernel's record of signals, for students and the grader."""
    return _compiled("sigtrace", AGENT_CFLAGS)


def host_tool(name: str) -> Path:
    """vm/NAME.c compiled for the host."""
    return _compiled(name, ["-O2", "-Wall", "-Wextra", "-Werror"])


_applets: dict[tuple[str, float], list[str]] = {}


def busybox_applets(busybox: Path) -> list[str]:
    """Paths such as 'bin/ls', 'sbin/insmod' from `busybox --list-full` (cached per process)."""
    key = (str(busybox), busybox.stat().st_mtime)
    if key not in _applets:
        res = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True)
        if res.returncode != 0:
            raise InitramfsError(f"{busybox}: `busybox --list-full` failed")
        _applets[key] = [l.strip() for l in res.stdout.splitlines() if l.strip()]
    return _applets[key]


# ---------------------------------------------------------------- the archive

BASE_DIRS = ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "lab", "root", "etc",
             "lib", LIB_DIR.lstrip("/"), "lib64", "mnt", "run", "var"]


def _file_entry(path: Path) -> Entry:
    st = path.stat()
    return Entry(stat.S_IFREG | (st.st_mode & 0o7777), path.read_bytes(), int(st.st_mtime))


def _expand(files: Mapping[str, Source]) -> dict[str, Entry]:
    """The caller's mapping as archive entries; a host folder becomes its tree."""
    out: dict[str, Entry] = {}
    for guest, src in files.items():
        guest = "/" + guest.strip("/")
        if isinstance(src, (bytes, bytearray)):
            out[guest] = Entry(stat.S_IFREG | 0o644, bytes(src))
            continue
        src = Path(src)
        if src.is_dir():
            out[guest] = Entry(stat.S_IFDIR | 0o755)
            for p in sorted(src.rglob("*")):
                rel = p.relative_to(src).as_posix()
                if p.is_dir():
                    out[f"{guest}/{rel}"] = Entry(stat.S_IFDIR | 0o755)
                elif p.is_file():
                    out[f"{guest}/{rel}"] = _file_entry(p)
        elif src.is_file():
            out[guest] = _file_entry(src)
        else:
            raise InitramfsError(f"{src}: no such file (wanted in the VM as {guest})")
    return out


def write(out: BinaryIO, files: Mapping[str, Source] | None = None, libc: bool = True,
          busybox: Path | None = None) -> int:
    """Write the whole archive to `out`; returns its size in bytes."""
    if busybox is None:
        busybox = fetch.ensure(quiet=True) / "busybox"
    extra = _expand(files or {})
    entries: dict[str, Entry] = {}
    for d in BASE_DIRS:
        entries["/" + d] = Entry(stat.S_IFDIR | (0o1777 if d == "tmp" else 0o755))
    entries["/dev/console"] = Entry(stat.S_IFCHR | 0o600, rdev=(5, 1))
    entries["/init"] = Entry(stat.S_IFREG | 0o755, INIT.read_bytes())
    entries["/bin/busybox"] = _file_entry(busybox)
    for applet in busybox_applets(busybox):
        if applet != "bin/busybox":
            entries["/" + applet] = Entry(stat.S_IFLNK | 0o777, b"/bin/busybox")
    entries["/bin/agent"] = _file_entry(agent_binary())
    entries["/usr/bin/sigtrace"] = _file_entry(sigtrace_binary())
    # student: the unprivileged user the grader runs the student's programs as (grader/guest/runas.c)
    entries["/etc/passwd"] = Entry(stat.S_IFREG | 0o644, b"root:x:0:0:root:/root:/bin/sh\n"
                                   b"student:x:1000:1000:student:/tmp:/bin/sh\n")
    entries["/etc/group"] = Entry(stat.S_IFREG | 0o644, b"root:x:0:\nstudent:x:1000:\n")
    if libc:
        libs = {name: find_host_lib(name) for name in BASE_LIBS}
        missing = [n for n, p in libs.items() if p is None]
        if missing:
            raise InitramfsError(f"host glibc not found ({', '.join(missing)}): run `make deps`")
        libs.update(library_closure([e.data for e in extra.values()], set(libs)))
        for name, p in libs.items():
            entries[f"{LIB_DIR}/{name}"] = _file_entry(p)  # type: ignore[arg-type]
        entries[f"/lib64/{LOADER}"] = Entry(stat.S_IFLNK | 0o777, f"{LIB_DIR}/{LOADER}".encode())
        entries["/usr/lib"] = Entry(stat.S_IFLNK | 0o777, b"../lib")
    entries.update(extra)

    w = CpioWriter(out)
    done: set[str] = set()
    for name in entries:
        # Parents first: the kernel's unpacker does not create missing folders.
        parts = name.strip("/").split("/")
        for i in range(1, len(parts)):
            parent = "/" + "/".join(parts[:i])
            if parent not in done:
                w.add(parent, entries.get(parent, Entry(stat.S_IFDIR | 0o755)))
                done.add(parent)
        if name not in done:
            w.add(name, entries[name])
            done.add(name)
    w.finish()
    return w.size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--file", action="append", default=[], metavar="GUEST=HOST")
    ap.add_argument("--no-libc", action="store_true", help="leave glibc out (static programs only)")
    args = ap.parse_args()
    files: dict[str, Source] = {}
    for spec in args.file:
        guest, sep, host = spec.partition("=")
        if not sep:
            print(f"initramfs: --file wants GUEST=HOST, got {spec!r}", file=sys.stderr)
            return 2
        files[guest] = Path(host)
    try:
        with open(args.out, "wb") as f:
            size = write(f, files, libc=not args.no_libc)
    except (InitramfsError, fetch.FetchError) as e:
        print(f"initramfs: {e}", file=sys.stderr)
        return 1
    print(f"initramfs: wrote {args.out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
