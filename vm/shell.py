#!/usr/bin/env python3
"""`make vm`: an interactive shell in the workbook VM.

Builds what there is to try (the button board from driver/, and with LAB=N
the lab's module and programs from labs/, or from SUBMISSION=DIR), puts it
all in /lab, and boots Debian's kernel in QEMU with the console on this
terminal. Quit with `poweroff` (or by leaving the shell), or Ctrl-A then X.

    vm/shell.py [--lab N] [--submission DIR] [--no-build]

A lab's module is its folder's Kbuild (built with vm/kmod.py against the VM
kernel's headers); its programs are the folder's other .c files that have a
main(), built static. Build failures are shown and the VM boots anyway, with
what did build.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vm import fetch, kmod, machine  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HAS_MAIN = re.compile(r"^(?:\s*int\s+)?main\s*\(", re.M)  # also TLPI's "int" and "main(" on two lines


def say(msg: str) -> None:
    print(f"vm: {msg}", file=sys.stderr, flush=True)


def lab_folder(root: Path, number: int) -> Path | None:
    found = sorted(root.glob(f"{number:02d}-*"))
    return found[0] if found else None


def build_lab(folder: Path, out: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    if (folder / "Kbuild").is_file():
        b = kmod.build_module(folder, out / "module", w1=True, cache=True)  # as the grader builds it
        if b.ok:
            files.update({f"{name}.ko": p for name, p in b.kos.items()})
        else:
            say(f"{folder.name}: the module does not build:\n{b.summary()}")
    for src in sorted(folder.glob("*.c")):
        if not HAS_MAIN.search(src.read_text(errors="replace")):
            continue
        exe = out / src.stem
        res = subprocess.run(["gcc", "-static", "-O1", "-g", "-Wall", "-Wextra", f"-I{folder}", "-o", str(exe),
                              str(src)], capture_output=True, text=True)
        if res.returncode == 0:
            files[src.stem] = exe
        else:
            say(f"{folder.name}/{src.name} does not compile:\n{res.stderr[-1500:]}")
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description="A shell in the workbook VM.")
    ap.add_argument("--lab", type=int, help="also build this lab's module and programs (from labs/)")
    ap.add_argument("--submission", type=Path, default=REPO / "labs", help="where the labs are (default labs/)")
    ap.add_argument("--no-build", action="store_true", help="boot with an empty /lab")
    ap.add_argument("--memory", type=int, default=256, help="MB of RAM (default 256)")
    args = ap.parse_args()
    try:
        cache = fetch.ensure(quiet=True)
        qemu = machine.find_qemu()
    except (fetch.FetchError, machine.VMError) as e:
        say(str(e))
        return 1

    work = Path(tempfile.mkdtemp(prefix="workbook-vm-"))
    try:
        files: dict[str, Path] = {}
        if not args.no_build:
            try:
                files.update(kmod.build_board(say=say))
            except kmod.KmodError as e:
                say(str(e))
            if args.lab is not None:
                folder = lab_folder(args.submission, args.lab)
                if folder is None:
                    say(f"no lab {args.lab:02d}-* in {args.submission}")
                    return 1
                try:
                    files.update(build_lab(folder, work / "lab"))
                except kmod.KmodError as e:
                    say(str(e))
                    return 1
        guest = {f"/lab/{name}": path for name, path in files.items()}
        if "button" in files:
            guest["/usr/bin/button"] = files["button"]
        try:
            initrd = machine.make_initrd(guest, cache / "busybox")
        except machine.VMError as e:
            say(str(e))
            return 1
        cmdline = f"{machine.KERNEL_CMDLINE} workbook.shell=1"
        if sys.stdin.isatty():
            size = shutil.get_terminal_size((80, 24))
            cmdline += f" workbook.rows={size.lines} workbook.cols={size.columns}"
        argv = machine.qemu_command(qemu, cache / "vmlinux", f"/dev/fd/{initrd}", cmdline,
                                    ["-serial", "mon:stdio"], args.memory)
        say("booting (Ctrl-A X quits at any time) ...")
        try:
            proc = machine.start_qemu(argv, (initrd,))
        except machine.VMError as e:
            say(str(e))
            return 1
        try:
            status = proc.wait()
        except KeyboardInterrupt:
            status = 130
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(initrd)
        if sys.stdin.isatty():
            subprocess.run(["stty", "sane"], check=False)
        return 0 if status in (0, 130) else status
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
