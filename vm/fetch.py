#!/usr/bin/env python3
"""Fetch the VM's kernel, headers and busybox into vm/cache, never into /boot.

Resolves Debian's `linux-image-amd64` to the concrete image it depends on
(for example linux-image-6.1.0-56-amd64) at fetch time, downloads that image,
its headers (`-amd64` and `-common`), `linux-kbuild-6.1` and `busybox-static`
with `apt-get download`, unpacks them with `dpkg-deb -x`, and prepares:

    vm/cache/<VER>/vmlinux          decompressed kernel, booted through PVH
    vm/cache/<VER>/kdir             KDIR for `make -C KDIR M=... modules`
    vm/cache/<VER>/busybox          static busybox for the initramfs
    vm/cache/<VER>/config           the kernel's .config
    vm/cache/current                the version in use (one line)

Everything is built in a temporary folder and renamed into place only when
complete, so an interrupted or failed fetch leaves nothing a later run trusts.
A second run finds the complete folder and downloads nothing.

Usage: vm/fetch.py [--refresh] [--print {version,dir,kdir,vmlinux,busybox}] [--quiet]
"""
from __future__ import annotations

import argparse
import lzma
import re
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("WORKBOOK_VM_CACHE", HERE / "cache"))
STAMP = "complete"
XZ_MAGIC = b"\xfd7zXZ\x00"


class FetchError(Exception):
    """A failure with a message meant for the user, one line."""


def run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise FetchError(f"{cmd[0]} not found: run `make deps` first")
    if res.returncode != 0:
        last = (res.stderr or res.stdout).strip().splitlines()
        raise FetchError(f"`{' '.join(cmd)}` failed: {last[-1] if last else 'no output'}")
    return res.stdout


def resolve_version() -> str:
    """linux-image-amd64 -> '6.1.0-56-amd64' (what it depends on right now)."""
    out = run(["apt-cache", "depends", "linux-image-amd64"])
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-"):
            return line.split("linux-image-", 1)[1].strip()
    raise FetchError("cannot resolve linux-image-amd64: run `apt-get update` (make deps does it)")


def recorded_version() -> str | None:
    try:
        return (CACHE / "current").read_text().strip() or None
    except OSError:
        return None


def is_complete(d: Path) -> bool:
    """A cache folder is trusted only with its stamp and a matching vmlinux."""
    stamp = d / STAMP
    vmlinux = d / "vmlinux"
    if not stamp.is_file() or not vmlinux.is_file():
        return False
    if stamp.read_text().strip() != str(vmlinux.stat().st_size) or not (d / "busybox").is_file():
        return False
    return relative_include(d)


def relative_include(d: Path) -> bool:
    """Make the headers' Makefile include the -common headers by a path relative to itself.

    Debian's -amd64 headers' Makefile is one line, `include /usr/src/linux-headers-X-common/Makefile`.
    Pointing it at the cache by absolute path would tie the cache to where the repository was when it
    was fetched (a moved or copied repository, or a sandbox that binds the headers elsewhere, would
    build against a path that is not there); relative to the Makefile's own folder it works from
    anywhere. Rewrites older caches in place; False when the Makefile is not one we know.
    """
    mk = d / "kdir" / "Makefile"
    try:
        text = mk.read_text()
    except OSError:
        return False
    m = re.fullmatch(r"include\s+(\S.*/(linux-headers-[^/\s]+-common)/Makefile)\s*", text)
    if m is None:
        return False
    common = m.group(2)
    if not (mk.resolve().parent.parent / common / "Makefile").is_file():
        return False
    want = f"include $(dir $(lastword $(MAKEFILE_LIST)))../{common}/Makefile\n"
    if text != want:
        tmp = mk.with_name(f".Makefile.{os.getpid()}")
        tmp.write_text(want)
        os.replace(tmp, mk)
    return True


def decompress_vmlinux(vmlinuz: Path, out: Path) -> None:
    """Debian's vmlinuz is a bzImage with an xz payload; the payload is an ELF vmlinux with a PVH note."""
    data = vmlinuz.read_bytes()
    at = data.find(XZ_MAGIC)
    if at < 0:
        raise FetchError(f"{vmlinuz.name}: no xz stream found (is CONFIG_KERNEL_XZ still set?)")
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        elf = dec.decompress(data[at:])
    except lzma.LZMAError as e:
        raise FetchError(f"{vmlinuz.name}: corrupt xz payload: {e}")
    if not elf.startswith(b"\x7fELF"):
        raise FetchError(f"{vmlinuz.name}: payload is not an ELF vmlinux")
    out.write_bytes(elf)


def fetch(version: str, quiet: bool) -> Path:
    dest = CACHE / version
    CACHE.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        shutil.rmtree(dest)  # incomplete or corrupt: never trusted
    abi = version.rsplit("-", 1)[0]  # 6.1.0-56
    series = ".".join(abi.split(".")[:2])  # 6.1
    pkgs = [
        f"linux-image-{version}",
        f"linux-headers-{version}",
        f"linux-headers-{abi}-common",
        f"linux-kbuild-{series}",
        "busybox-static",
    ]
    if not quiet:
        print(f"fetch: downloading {', '.join(pkgs)}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=CACHE))
    try:
        debs = tmp / "debs"
        debs.mkdir()
        os.chmod(tmp, 0o755)
        os.chmod(debs, 0o777)  # apt's _apt sandbox user writes here when we are root
        try:
            run(["apt-get", "download", "-q", *pkgs], cwd=debs)
        except FetchError as e:
            raise FetchError(f"cannot download from Debian's package archive: {e}")
        root = tmp / "root"
        for deb in sorted(debs.glob("*.deb")):
            run(["dpkg-deb", "-x", str(deb), str(root)])
        shutil.rmtree(debs)

        kdir = root / "usr/src" / f"linux-headers-{version}"
        common = root / "usr/src" / f"linux-headers-{abi}-common"
        mk = kdir / "Makefile"
        text = mk.read_text()
        # The -amd64 headers include the -common ones by an absolute /usr/src path: make it relative.
        if f"/usr/src/{common.name}/Makefile" not in text:
            raise FetchError(f"{mk}: unexpected content, cannot point it at the cached -common headers")

        decompress_vmlinux(root / "boot" / f"vmlinuz-{version}", tmp / "vmlinux")
        shutil.copy2(root / "boot" / f"config-{version}", tmp / "config")
        shutil.copy2(root / "boot" / f"System.map-{version}", tmp / "System.map")
        shutil.copy2(root / "bin" / "busybox", tmp / "busybox")
        # The VM needs none of Debian's 3,000 modules; dropping them saves ~400 MB.
        shutil.rmtree(root / "lib" / "modules", ignore_errors=True)
        shutil.rmtree(root / "boot")
        os.symlink(Path("root/usr/src") / kdir.name, tmp / "kdir")
        if not relative_include(tmp):
            raise FetchError(f"{mk}: cannot point it at the cached -common headers")
        (tmp / STAMP).write_text(f"{(tmp / 'vmlinux').stat().st_size}\n")
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def ensure(quiet: bool = False, refresh: bool = False) -> Path:
    """Return the complete cache folder for the kernel, fetching it if needed.

    A complete cache is reused as it is (builds and grades stay on one kernel);
    refresh=True resolves linux-image-amd64 again and fetches a newer version.
    """
    cached = recorded_version()
    if not refresh and cached and is_complete(CACHE / cached):
        return CACHE / cached
    try:
        version = resolve_version()
    except FetchError:
        version = recorded_version()  # offline, but a cache exists: use it
        if version is None or not is_complete(CACHE / version):
            raise
    dest = CACHE / version
    if not is_complete(dest):
        if dest.exists() and not quiet:
            print(f"fetch: cache for {version} is incomplete or corrupt; fetching it again", flush=True)
        fetch(version, quiet)
    current = CACHE / "current"
    if recorded_version() != version:
        tmp = CACHE / ".current.tmp"
        tmp.write_text(version + "\n")
        tmp.rename(current)
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--print", choices=["version", "dir", "kdir", "vmlinux", "busybox"])
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--refresh", action="store_true", help="resolve linux-image-amd64 again")
    args = ap.parse_args()
    try:
        d = ensure(args.quiet, args.refresh)
    except FetchError as e:
        print(f"fetch: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fetch: interrupted; nothing half-made was kept", file=sys.stderr)
        return 130
    what = {
        "version": d.name,
        "dir": str(d),
        "kdir": str(d / "kdir"),
        "vmlinux": str(d / "vmlinux"),
        "busybox": str(d / "busybox"),
    }
    if args.print:
        print(what[args.print])
    elif not args.quiet:
        print(f"fetch: kernel {d.name} ready in {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
