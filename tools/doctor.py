#!/usr/bin/env python3
"""make doctor: check what a new machine needs for the workbook, and say how to fix what is missing.

Each check prints one line, `ok` or `PROBLEM`, and for a problem the command or step that fixes it:
the Debian packages (tools/deps.sh), QEMU's version, /dev/kvm (optional: without it the VM runs
under TCG, slower but fine), free disk space, the VM's kernel cache (vm/fetch.py: which guest, its exact version), the sandbox
(bubblewrap and user namespaces), and, for instructors, what the slides need.

Usage: tools/doctor.py        (exit status 1 when something the labs need is missing)
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "grader"))

QEMU_MIN = (7, 2)
DISK_MIN = 2 << 30  # bytes free for the kernel cache (about 0.2 GB), builds and scratch folders

problems = 0


def report(ok: bool, what: str, fix: str = "", needed: bool = True) -> None:
    global problems
    if ok:
        print(f"  ok       {what}")
        return
    print(f"  {'PROBLEM' if needed else 'note   '}  {what}")
    if fix:
        print(f"           fix: {fix}")
    problems += needed


def run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def main() -> int:
    print("make doctor: what this machine has for the workbook")
    deps = subprocess.run(["sh", str(REPO / "tools" / "deps.sh"), "--check"], capture_output=True, text=True)
    report(deps.returncode == 0, "Debian packages for grading and the VM" +
           (f" ({deps.stderr.strip()})" if deps.returncode else ""), "make deps  (as root, or with sudo)")

    qemu = shutil.which("qemu-system-x86_64")
    version = re.search(r"version (\d+)\.(\d+)", run([qemu, "--version"]) if qemu else "")
    have = (int(version.group(1)), int(version.group(2))) if version else None
    report(have is not None and have >= QEMU_MIN,
           f"QEMU {'.'.join(map(str, have)) if have else 'not found'} (needs {'.'.join(map(str, QEMU_MIN))} or later)",
           "make deps  (Debian 12's qemu-system-x86 is 7.2)")

    from vm import machine
    if qemu:
        firmware = machine.microvm_firmware(qemu)
        report(firmware is not None,
               f"the VM's firmware: {firmware}" if firmware else
               f"the VM's firmware: QEMU has no {machine.MICROVM_FIRMWARE}, so the VM boots QEMU's default "
               "(on Debian 13 that is SeaBIOS's microvm build, which fails most boots)",
               "install qemu-system-data, which carries it on Debian", needed=False)
    kvm = os.path.exists("/dev/kvm")
    access = os.access("/dev/kvm", os.R_OK | os.W_OK)
    usable = machine.kvm_usable() if kvm and qemu else False
    report(usable, "KVM: " + ("usable, the VM runs at full speed" if usable else
                              "no access to /dev/kvm; the VM runs under TCG (emulated: fine, a little slower)"
                              if kvm and not access else
                              "/dev/kvm is there but QEMU cannot run with it (a nested hypervisor?); the VM runs "
                              "under TCG (emulated: fine, a little slower)" if kvm else
                              "no /dev/kvm; the VM runs under TCG (emulated, about 1.6 s to boot: fine)"),
           "optional: sudo adduser $USER kvm, then log in again" if kvm and not access else "", needed=False)

    for where in (REPO, Path("/tmp")):
        free = shutil.disk_usage(where).free
        report(free >= DISK_MIN, f"free disk space in {where}: {free / (1 << 30):.1f} GB (needs {DISK_MIN >> 30} GB)",
               "free some space (make clean removes build products)")

    from vm import fetch
    try:
        spec = fetch.spec()
    except fetch.FetchError as e:
        report(False, f"the guest kernel: {e}", "make fetch KERNEL=NAME with a name from vm/kernels.json")
        spec = fetch.spec(fetch.kernels()["default"])
    version_now = fetch.recorded_version(spec["name"])
    cached = version_now is not None and fetch.is_complete(fetch.CACHE / version_now)
    report(cached, f"the VM's kernel ({spec['name']}: Debian {spec['debian']}, {spec['series']} series), headers and "
                   f"busybox in vm/cache: " + (fetch.guest_line(spec["name"]).removeprefix("guest kernel: ")
                                               if cached else "not fetched yet"),
           "make fetch" + (f" KERNEL={spec['name']}" if spec["name"] != fetch.kernels()["default"] else "") +
           "  (downloads about 60 MB from Debian's archive, once)")
    if not cached:
        try:
            archive, _ = fetch.mirrors()
            report(shutil.which("apt-get") is not None, f"the mirror the fetch would use: {archive}",
                   f"apt is missing; supported: {fetch.SUPPORTED}")
        except fetch.FetchError as e:
            report(False, str(e), f"export {fetch.MIRROR_VAR}=URL of a Debian mirror")
    for name in fetch.kernels()["kernels"]:
        if name != spec["name"]:
            other = fetch.recorded_version(name)
            line = fetch.guest_line(name) if other and fetch.is_complete(fetch.CACHE / other) else ""
            report(False, f"the other guest {name}: " + (line.removeprefix("guest kernel: ") or
                                                        f"not fetched (opt-in: make fetch KERNEL={name})"),
                   needed=False)

    from gradelib import sandbox
    try:
        ok = sandbox.bwrap_usable()
    except OSError:
        ok = False
    report(ok, "the sandbox for student code (bubblewrap with its own namespaces)" +
           ("" if ok else f": {sandbox._bwrap_why or 'not usable'}"),
           "install bubblewrap (make deps); if it says user namespaces are off: "
           "sudo sysctl kernel.unprivileged_userns_clone=1", needed=False)

    node = shutil.which("node")
    chromium = shutil.which("chromium")
    report(bool(node and chromium), "for instructors, make slides: " +
           ", ".join(f"{n} {'found' if p else 'missing'}" for n, p in (("node", node), ("chromium", chromium))),
           "make slides-debs", needed=False)

    print("make doctor: " + ("everything the labs need is here" if not problems else
                             f"{problems} problem(s); the fixes are above"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
