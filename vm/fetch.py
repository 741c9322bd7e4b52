#!/usr/bin/env python3
"""Fetch the VM's kernel, headers and busybox into vm/cache, never into /boot.

The workbook names its guest kernels in vm/kernels.json: a Debian suite and a kernel series (Debian 12's
6.1 by default; KERNEL=trixie, that is WORKBOOK_KERNEL=trixie, for Debian 13's 6.12). The fetch asks
apt itself, with a private configuration and state in vm/cache/apt-SUITE (its own sources for SUITE and
SUITE-security, signed by debian-archive-keyring; never the host's sources, lists or dpkg status), which
image that suite's `linux-image-amd64` depends on today (for example linux-image-6.1.0-57-amd64), then
downloads that image, its headers (`-amd64` and `-common`), `linux-kbuild-SERIES` and `busybox-static`
with `apt-get download` (apt checks the archive's signature and every package's checksum), unpacks them
with `dpkg-deb -x`, and prepares:

    vm/cache/<ABI>/vmlinux          decompressed kernel, booted through PVH
    vm/cache/<ABI>/kdir             KDIR for `make -C KDIR M=... modules`
    vm/cache/<ABI>/busybox          static busybox for the initramfs
    vm/cache/<ABI>/config           the kernel's .config
    vm/cache/<ABI>/guest.json       what it is: guest name, suite, series, ABI, Debian package version
    vm/cache/current                the default guest's ABI in use (one line);
    vm/cache/current-NAME           ... another guest's (current-trixie)

The mirror is the host's Debian archive (its apt sources) on a Debian host, else WORKBOOK_DEBIAN_MIRROR
(and WORKBOOK_DEBIAN_SECURITY_MIRROR, by default the same URL with -security appended).

Everything is built in a temporary folder and renamed into place only when complete, so an interrupted
or failed fetch leaves nothing a later run trusts. A second run finds the complete folder and neither
downloads nor asks apt anything.

Usage: vm/fetch.py [--kernel NAME] [--refresh] [--print {version,dir,kdir,vmlinux,busybox,guest}] [--quiet]
"""
from __future__ import annotations

import argparse
import json
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
KERNELS = HERE / "kernels.json"
STAMP = "complete"
GUEST = "guest.json"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
APT_ETC = Path("/etc/apt")
MIRROR_VAR = "WORKBOOK_DEBIAN_MIRROR"
SECURITY_VAR = "WORKBOOK_DEBIAN_SECURITY_MIRROR"
# Debian's suites by name: how a host's sources are told from Ubuntu's or a third party's.
DEBIAN_SUITES = {"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
                 "oldoldstable", "oldstable", "stable", "testing", "unstable"}
SUPPORTED = ("Debian 12 and Debian 13 hosts (Ubuntu 22.04 and 24.04 with WORKBOOK_DEBIAN_MIRROR set), "
             "or the dev container (.devcontainer/, README: On macOS or Windows)")


class FetchError(Exception):
    """A failure with a message meant for the user, one line."""


# --- which guest ---------------------------------------------------------------------------------
def kernels() -> dict:
    return json.loads(KERNELS.read_text())


def selected(name: str | None = None) -> str:
    """The guest's name: NAME, else $WORKBOOK_KERNEL, else the default of vm/kernels.json."""
    table = kernels()
    name = name or os.environ.get("WORKBOOK_KERNEL") or table["default"]
    if name not in table["kernels"]:
        raise FetchError(f"no guest kernel named {name!r} in vm/kernels.json (there are: "
                         f"{', '.join(table['kernels'])})")
    return name


def spec(name: str | None = None) -> dict:
    name = selected(name)
    return dict(kernels()["kernels"][name], name=name)


def record_file(name: str | None = None) -> Path:
    name = selected(name)
    return CACHE / ("current" if name == kernels()["default"] else f"current-{name}")


def make_arg() -> str:
    """' KERNEL=NAME' when the selected guest is not the default, for the commands messages name."""
    try:
        name = selected()
    except FetchError:
        return ""
    return "" if name == kernels()["default"] else f" KERNEL={name}"


def recorded_version(name: str | None = None) -> str | None:
    """The ABI name (6.1.0-57-amd64) of the selected guest's kernel in vm/cache, or None."""
    try:
        return record_file(name).read_text().strip() or None
    except (OSError, FetchError):
        return None


def guest_info(d: Path) -> dict:
    try:
        return json.loads((d / GUEST).read_text())
    except (OSError, ValueError):
        return {}


# --- the mirror ----------------------------------------------------------------------------------
def _one_line_entries(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)(.*)", line)
        if m:
            out.append({"uris": [m.group(1)], "suites": [m.group(2)], "enabled": True})
    return out


def _deb822_entries(text: str) -> list[dict]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        out.append({"uris": fields.get("uris", "").split(), "suites": fields.get("suites", "").split(),
                    "enabled": fields.get("enabled", "yes").lower() not in ("no", "false", "0")})
    return out


def host_mirrors(etc: Path = APT_ETC) -> tuple[str, str] | None:
    """(archive URI, security URI) of the host's Debian sources, or None when it has none.

    Reads sources.list and sources.list.d/*.list and *.sources as apt does (other names, such as
    x.list.disabled, are not read by apt either; deb822 stanzas with Enabled: no are skipped)."""
    files = [etc / "sources.list"] + sorted((etc / "sources.list.d").glob("*.list")) + \
        sorted((etc / "sources.list.d").glob("*.sources"))
    entries = []
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        entries += _deb822_entries(text) if f.suffix == ".sources" else _one_line_entries(text)
    archive = security = None
    for e in entries:
        if not e["enabled"] or not e["uris"]:
            continue
        for suite in e["suites"]:
            base, _, kind = suite.partition("-")
            if base not in DEBIAN_SUITES:
                continue
            uri = e["uris"][0].rstrip("/")
            if kind == "security" or "/updates" in suite:
                security = security or uri
            elif kind in ("", "updates") and not uri.endswith("-security"):
                archive = archive or uri
    if archive is None:
        return None
    return archive, security or archive + "-security"


def mirrors(etc: Path = APT_ETC) -> tuple[str, str]:
    """The archive and security mirrors to fetch from: $WORKBOOK_DEBIAN_MIRROR, else the host's."""
    env = os.environ.get(MIRROR_VAR, "").strip().rstrip("/")
    if env:
        return env, os.environ.get(SECURITY_VAR, "").strip().rstrip("/") or env + "-security"
    found = host_mirrors(etc)
    if found is None:
        raise FetchError(f"this host's apt sources name no Debian archive: set {MIRROR_VAR} to a Debian mirror's "
                         f"URL (README: Hosts); supported: {SUPPORTED}")
    return found


# --- the private apt -----------------------------------------------------------------------------
def apt_dir(suite: str) -> Path:
    return CACHE / f"apt-{suite}"


def apt_options(suite: str) -> list[str]:
    """apt with only vm/cache/apt-SUITE: its sources, lists, package cache, an empty dpkg status."""
    d = apt_dir(suite)
    opts = {
        "Dir::Etc": str(d / "etc"), "Dir::Etc::sourcelist": "sources.list",
        "Dir::Etc::sourceparts": "sources.list.d", "Dir::Etc::parts": "apt.conf.d",
        "Dir::Etc::preferences": "preferences", "Dir::Etc::preferencesparts": "preferences.d",
        "Dir::State": str(d / "state"), "Dir::State::status": str(d / "state" / "status"),
        "Dir::Cache": str(d / "cache"), "APT::Architecture": "amd64", "APT::Architectures": "amd64",
        "Acquire::Languages": "none", "Debug::NoLocking": "1", "APT::Get::List-Cleanup": "1",
    }
    return [a for k, v in opts.items() for a in ("-o", f"{k}={v}")]


def write_apt_setup(suite: str, archive: str, security: str) -> None:
    d = apt_dir(suite)
    for sub in ("etc/sources.list.d", "etc/apt.conf.d", "etc/preferences.d", "state/lists/partial",
                "cache/archives/partial"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "etc" / "sources.list").write_text("")
    (d / "state" / "status").touch()
    sources = (f"Types: deb\nURIs: {archive}\nSuites: {suite}\nComponents: main\nSigned-By: {KEYRING}\n\n"
               f"Types: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\nSigned-By: {KEYRING}\n")
    f = d / "etc" / "sources.list.d" / "workbook.sources"
    if not f.is_file() or f.read_text() != sources:
        f.write_text(sources)
        shutil.rmtree(d / "state" / "lists", ignore_errors=True)  # lists of another mirror: not ours
        (d / "state" / "lists" / "partial").mkdir(parents=True)


def run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        if cmd[0].startswith("apt"):
            raise FetchError(f"{cmd[0]} not found: this host has no apt. The guest kernel comes from Debian's "
                             f"archive through apt; supported: {SUPPORTED}")
        raise FetchError(f"{cmd[0]} not found: run `make deps` first")
    if res.returncode != 0:
        lines = (res.stderr or res.stdout).strip().splitlines()
        errs = [ln for ln in lines if ln.startswith("E: ")]
        shown = " ".join(c for c in cmd if "::" not in c and c != "-o")  # without the private setup's options
        raise FetchError(f"`{shown}` failed: {errs[0] if errs else lines[-1] if lines else 'no output'}")
    return res.stdout


def apt_update(suite: str) -> None:
    archive, security = mirrors()
    if not KEYRING.is_file():
        raise FetchError(f"{KEYRING} is missing: install debian-archive-keyring (make deps)")
    write_apt_setup(suite, archive, security)
    try:
        run(["apt-get", *apt_options(suite), "-q", "update", "--error-on=any"])
    except FetchError as e:
        # Keep no list apt could not verify: a later run starts over.
        shutil.rmtree(apt_dir(suite) / "state" / "lists", ignore_errors=True)
        why = str(e).split(" failed: ", 1)[-1]
        if "404" in why or "does not have a Release file" in why:
            raise FetchError(f"cannot download from Debian's package archive: {suite} is not on {archive} (any more?): "
                             f"{why}; if the suite has moved to Debian's archive of old releases, set {MIRROR_VAR} "
                             f"to that archive, or choose another guest in vm/kernels.json (KERNEL=NAME)")
        raise FetchError(f"cannot download from Debian's package archive ({archive}): {why}")


def resolve(s: dict) -> tuple[str, str]:
    """The suite's linux-image-amd64 -> ('6.1.0-57-amd64', '6.1.192-3'), checked against the named series."""
    opts = apt_options(s["suite"])
    out = run(["apt-cache", *opts, "depends", "linux-image-amd64"])
    abi = next((ln.strip().split("linux-image-", 1)[1].strip() for ln in out.splitlines()
                if ln.strip().startswith("Depends: linux-image-")), None)
    if abi is None:
        raise FetchError(f"Debian {s['suite']} has no linux-image-amd64 on this mirror")
    if not abi.startswith(s["series"] + "."):
        raise FetchError(f"the {s['series']} series has left Debian {s['suite']} (its kernel is now {abi}): name "
                         f"that series in vm/kernels.json, or keep a vm/cache that has {s['series']}")
    show = run(["apt-cache", *opts, "show", "--no-all-versions", f"linux-image-{abi}"])
    m = re.search(r"^Version: (\S+)", show, re.M)
    return abi, m.group(1) if m else "?"


def kbuild_package(s: dict, abi: str) -> str:
    """The kbuild tools the headers depend on: linux-kbuild-6.1 (Debian 12), linux-kbuild-6.12.118+deb13
    (Debian 13, where linux-kbuild-6.12 is provided by every upload's package)."""
    out = run(["apt-cache", *apt_options(s["suite"]), "depends", f"linux-headers-{abi}"])
    found = re.search(r"Depends: (linux-kbuild-\S+)", out)
    return found.group(1) if found else f"linux-kbuild-{s['series']}"


# --- the cache -----------------------------------------------------------------------------------
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


def banner(vmlinux: Path) -> tuple[str, str] | None:
    """(ABI, Debian package version) from the kernel's own `Linux version ... Debian X` string."""
    with open(vmlinux, "rb") as f:
        data = f.read()
    m = re.search(rb"Linux version (\S+) \(debian-kernel@[^\n]*? Debian (\S+) \(", data)
    return (m.group(1).decode(), m.group(2).decode()) if m else None


def verified(d: Path, s: dict) -> bool:
    """d is complete and holds the guest named s (its series); a cache fetched before vm/kernels.json
    (no guest.json) is adopted when its kernel's own banner says it is that series."""
    if not is_complete(d):
        return False
    info = guest_info(d)
    if info:
        return info.get("series") == s["series"] and info.get("suite") == s["suite"] and info.get("abi") == d.name
    seen = banner(d / "vmlinux")
    if seen is None or seen[0] != d.name or not d.name.startswith(s["series"] + ".") or \
            not seen[1].startswith(s["series"] + "."):
        return False
    write_guest(d, s, d.name, seen[1], how="adopted: fetched before vm/kernels.json; series checked on its banner")
    return True


def write_guest(d: Path, s: dict, abi: str, package: str, how: str) -> None:
    info = {"name": s["name"], "debian": s["debian"], "suite": s["suite"], "series": s["series"], "abi": abi,
            "package": package, "how": how}
    tmp = d / f".{GUEST}.{os.getpid()}"
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, d / GUEST)


def decompress_vmlinux(vmlinuz: Path, out: Path) -> None:
    """Debian's vmlinuz is a bzImage whose payload is an ELF vmlinux with a PVH note, compressed with xz
    (Debian 12) or zstd (Debian 13). The setup header says where the payload is (payload_offset at
    0x248, payload_length at 0x24c, from the protected-mode code at (setup_sects + 1) * 512); the
    kernel's build appends the uncompressed size, 4 bytes, which zstd does not take as part of its frame."""
    data = vmlinuz.read_bytes()
    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        raise FetchError(f"{vmlinuz.name}: not a bzImage")
    start = (data[0x1F1] or 4) * 512 + 512
    offset = int.from_bytes(data[0x248:0x24C], "little")
    length = int.from_bytes(data[0x24C:0x250], "little")
    payload = data[start + offset:start + offset + length]
    if payload.startswith(XZ_MAGIC):
        dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        try:
            elf = dec.decompress(payload)
        except lzma.LZMAError as e:
            raise FetchError(f"{vmlinuz.name}: corrupt xz payload: {e}")
    elif payload.startswith(ZSTD_MAGIC):
        try:
            res = subprocess.run(["zstd", "-dcq"], input=payload[:-4], capture_output=True)
        except FileNotFoundError:
            raise FetchError(f"{vmlinuz.name} is zstd-compressed and there is no zstd: run `make deps`")
        if res.returncode != 0:
            raise FetchError(f"{vmlinuz.name}: corrupt zstd payload: {res.stderr.decode(errors='replace').strip()}")
        elf = res.stdout
    else:
        raise FetchError(f"{vmlinuz.name}: the payload is neither xz nor zstd (payload_offset {offset:#x})")
    if not elf.startswith(b"\x7fELF"):
        raise FetchError(f"{vmlinuz.name}: payload is not an ELF vmlinux")
    out.write_bytes(elf)


def fetch(s: dict, version: str, package: str, quiet: bool) -> Path:
    dest = CACHE / version
    CACHE.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        shutil.rmtree(dest)  # incomplete or corrupt: never trusted
    abi = version.rsplit("-", 1)[0]  # 6.1.0-56
    pkgs = [
        f"linux-image-{version}",
        f"linux-headers-{version}",
        f"linux-headers-{abi}-common",
        kbuild_package(s, version),
        "busybox-static",
    ]
    if not quiet:
        print(f"fetch: Debian {s['debian']} ({s['suite']}), kernel {version} ({package}): downloading "
              f"{', '.join(pkgs)}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=CACHE))
    try:
        debs = tmp / "debs"
        debs.mkdir()
        os.chmod(tmp, 0o755)
        os.chmod(debs, 0o777)  # apt's _apt sandbox user writes here when we are root
        try:
            run(["apt-get", *apt_options(s["suite"]), "download", "-q", *pkgs], cwd=debs)
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
        # busybox-static puts it in /bin (Debian 12) or /usr/bin (Debian 13, merged /usr).
        busybox = next((p for p in (root / "bin" / "busybox", root / "usr/bin/busybox") if p.is_file()), None)
        if busybox is None:
            raise FetchError("busybox-static has no bin/busybox or usr/bin/busybox")
        shutil.copy2(busybox, tmp / "busybox")
        # The VM needs none of Debian's 3,000 modules; dropping them saves ~400 MB.
        shutil.rmtree(root / "lib" / "modules", ignore_errors=True)
        shutil.rmtree(root / "usr/lib/modules", ignore_errors=True)  # Debian 13: merged /usr
        shutil.rmtree(root / "boot")
        os.symlink(Path("root/usr/src") / kdir.name, tmp / "kdir")
        if not relative_include(tmp):
            raise FetchError(f"{mk}: cannot point it at the cached -common headers")
        host_compat(tmp, s, quiet)
        write_guest(tmp, s, version, package, how="apt-get download, private setup in vm/cache/apt-" + s["suite"])
        (tmp / STAMP).write_text(f"{(tmp / 'vmlinux').stat().st_size}\n")
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _glibc(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:2])


def needs_newer_glibc(elf: Path, host: tuple[int, ...]) -> bool:
    """Whether an ELF program asks for a GLIBC_x.y symbol version newer than the host's glibc."""
    data = elf.read_bytes()
    if not data.startswith(b"\x7fELF"):
        return False
    return any(_glibc(v.decode()) > host for v in set(re.findall(rb"GLIBC_(2\.\d+)\x00", data)))


WRAPPER = """#!/bin/sh
# vm/fetch.py: this kbuild tool of Debian {suite} needs a newer glibc than the host's: it runs with
# {suite}'s own loader and libraries (hostlibs/, from the same private apt). The program is NAME.glibc.
d=$(cd "$(dirname "$0")" && pwd -P)/{up}hostlibs
l=$d/usr/lib/x86_64-linux-gnu
exec "$l/ld-linux-x86-64.so.2" --library-path "$l:$d/lib/x86_64-linux-gnu" "$0.glibc" "$@"
"""


def host_compat(tmp: Path, s: dict, quiet: bool) -> None:
    """Debian 13's kbuild tools (modpost, objtool) need glibc 2.38; a Debian 12 host has 2.36. Each tool
    that needs more than the host's glibc runs with the guest suite's loader and libraries
    (vm/kernels.json's host_libs, from the same private, signed apt), through a small wrapper."""
    host = _glibc(os.confstr("CS_GNU_LIBC_VERSION") or "glibc 0.0")
    tools = [p for p in (tmp / "root/usr/lib").glob("linux-kbuild-*/**/*")
             if p.is_file() and not p.is_symlink() and os.access(p, os.X_OK) and needs_newer_glibc(p, host)]
    if not tools:
        return
    libs = s.get("host_libs") or []
    if not libs:
        raise FetchError(f"the kbuild tools of Debian {s['suite']} need a newer glibc than this host's and "
                         f"vm/kernels.json names no host_libs for it: use a Debian {s['debian']} host or the "
                         f"dev container")
    if not quiet:
        print(f"fetch: this host's glibc is older than Debian {s['suite']}'s: {len(tools)} kbuild tools will run "
              f"with {s['suite']}'s own loader ({', '.join(libs)})", flush=True)
    debs = tmp / "hostdebs"
    debs.mkdir()
    os.chmod(debs, 0o777)
    try:
        run(["apt-get", *apt_options(s["suite"]), "download", "-q", *libs], cwd=debs)
    except FetchError as e:
        raise FetchError(f"cannot download from Debian's package archive: {e}")
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg-deb", "-x", str(deb), str(tmp / "root" / "hostlibs")])
    shutil.rmtree(debs)
    for tool in tools:
        up = "../" * (len(tool.relative_to(tmp / "root").parts) - 1)
        os.rename(tool, tool.with_name(tool.name + ".glibc"))
        tool.write_text(WRAPPER.format(suite=s["suite"], up=up))
        tool.chmod(0o755)


def _record(name: str, version: str) -> None:
    f = record_file(name)
    if recorded_version(name) != version:
        tmp = f.with_name(f".{f.name}.tmp")
        tmp.write_text(version + "\n")
        tmp.rename(f)


def ensure(quiet: bool = False, refresh: bool = False, name: str | None = None) -> Path:
    """Return the complete cache folder for the selected guest's kernel, fetching it if needed.

    A complete cache of the named series is reused as it is, with no apt call (builds and grades stay
    on one kernel); refresh=True asks the suite again and fetches a newer version of the series."""
    s = spec(name)
    cached = recorded_version(s["name"])
    if not refresh and cached and verified(CACHE / cached, s):
        return CACHE / cached
    CACHE.mkdir(parents=True, exist_ok=True)
    if cached and (CACHE / cached).exists() and not is_complete(CACHE / cached):
        shutil.rmtree(CACHE / cached)  # half-made or corrupt: never trusted, not kept
    try:
        apt_update(s["suite"])
        version, package = resolve(s)
    except FetchError:
        if not refresh:
            raise
        if cached is None or not verified(CACHE / cached, s):
            raise
        version = cached  # --refresh offline, but a cache exists: keep it
        package = guest_info(CACHE / cached).get("package", "?")
    dest = CACHE / version
    if not verified(dest, s):
        if dest.exists() and not quiet:
            print(f"fetch: cache for {version} is incomplete or corrupt; fetching it again", flush=True)
        fetch(s, version, package, quiet)
    _record(s["name"], version)
    return dest


def guest_line(name: str | None = None) -> str:
    """One line for reports: the guest kernel grading runs on, and a note when it is not the version the
    workbook was checked on ('' when no kernel is fetched)."""
    try:
        s = spec(name)
    except FetchError as e:
        return f"guest kernel: {e}"
    version = recorded_version(s["name"])
    if version is None or not is_complete(CACHE / version):
        return ""
    info = guest_info(CACHE / version)
    if not info:  # a cache copied without its guest.json (an autograder image): the kernel's own banner
        seen = banner(CACHE / version / "vmlinux")
        info = {"package": seen[1]} if seen else {}
    package = info.get("package", "?")
    line = f"guest kernel: {version}, Debian {s['debian']} ({s['suite']}) package {package}"
    checked = s.get("checked", "")
    if checked and package not in (checked, "?"):
        line += (f"; the workbook was checked on {checked} of the {s['series']} series: a test that fails here "
                 f"and nowhere else may come from the kernel")
    return line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", help="a guest named in vm/kernels.json (default: $WORKBOOK_KERNEL, else its default)")
    ap.add_argument("--print", choices=["version", "dir", "kdir", "vmlinux", "busybox", "guest"])
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--refresh", action="store_true", help="ask the suite again for its newest kernel of the series")
    args = ap.parse_args()
    try:
        d = ensure(args.quiet, args.refresh, args.kernel)
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
        "guest": guest_line(args.kernel),
    }
    if args.print:
        print(what[args.print])
    elif not args.quiet:
        print(f"fetch: kernel {d.name} ready in {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
