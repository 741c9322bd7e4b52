#!/usr/bin/env python3
"""`make vm`: an interactive shell in the workbook VM.

Builds what there is to try (the button board from driver/, and with LAB=N
the lab's module and programs from labs/, or from SUBMISSION=DIR), puts it
all in /lab, and boots Debian's kernel in QEMU with the console on this
terminal. Quit with `poweroff` (or by leaving the shell), or Ctrl-A then X.

    vm/shell.py [--lab N] [--submission DIR] [--no-build]

A lab's module is its folder's Kbuild (built with vm/kmod.py against the VM
kernel's headers; a lab with none, lab 6, gets lab 3's driver, the grader's
reference copy, as button_driver_ref.ko); its programs are the folder's other .c files that have a
main(), built static. Build failures are shown and the VM boots anyway, with
what did build.
"""
from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
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


REFERENCE = REPO / "grader" / "reference" / "03-fasync-button"  # lab 3's driver (tools/mkstarter.py)
PROGRAM_FLAGS = ["-static", "-O1", "-g", "-Wall", "-Wextra"]


def build_lab(folder: Path, out: Path) -> dict[str, Path]:
    """The lab's module and programs; what did not change since the last build is taken from the cache
    (vm/cache/build: the module per digest of its sources, as the grader builds it; each program per
    digest of the folder's sources), so a second `make vm` builds nothing."""
    files: dict[str, Path] = {}
    if (folder / "Kbuild").is_file():
        if kmod.is_cached(folder, w1=True):
            say(f"{folder.name}: the module is unchanged: not built again")
        else:
            say(f"{folder.name}: building the module with kbuild (W=1) ...")
        b = kmod.build_module(folder, out / "module", w1=True, cache=True)  # as the grader builds it
        if b.ok:
            files.update({f"{name}.ko": p for name, p in b.kos.items()})
        else:
            say(f"{folder.name}: the module does not build:\n{b.summary()}")
    elif REFERENCE.is_dir():  # no driver of its own: the one it is graded against
        files["button_driver_ref.ko"] = kmod.build_as(REFERENCE, out / "reference", "button_driver_ref")
    headers = sorted(folder.glob("*.h"))
    for src in sorted(folder.glob("*.c")):
        if not HAS_MAIN.search(src.read_text(errors="replace")):
            continue
        cached = fetch.CACHE / "build" / "programs" / kmod.content_key([src, *headers], *PROGRAM_FLAGS) / src.stem
        if cached.is_file():
            files[src.stem] = cached
            continue
        say(f"{folder.name}: building {src.name} ...")
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{src.stem}.{os.getpid()}")
        res = subprocess.run(["gcc", *PROGRAM_FLAGS, f"-I{folder}", "-o", str(tmp), str(src)],
                             capture_output=True, text=True)
        if res.returncode == 0:
            os.replace(tmp, cached)
            files[src.stem] = cached
        else:
            say(f"{folder.name}/{src.name} does not compile:\n{res.stderr[-1500:]}")
    if files:
        say(f"{folder.name}: {', '.join(sorted(files))} ready (unchanged sources are not built again)")
    return files


PROMPT = b"vm:/lab# "


def feed_at_prompt(proc: subprocess.Popen) -> None:
    """Copy the VM's console to our stdout, and our stdin to the VM from its shell's first prompt on.

    Typed ahead while the VM boots, the first characters would be lost (the kernel's console is
    not listening yet, or the shell's line editor takes them as the answer to its terminal query),
    so commands from a pipe wait for the first prompt; after it, they go through as they come."""
    assert proc.stdout is not None and proc.stdin is not None
    prompted = threading.Event()

    def forward() -> None:
        held, eof = b"", False
        while True:
            if not eof and select.select([sys.stdin], [], [], 0.2)[0]:
                try:
                    chunk = os.read(sys.stdin.fileno(), 4096)
                except OSError:
                    chunk = b""
                eof = not chunk
                held += chunk
            elif eof:
                prompted.wait()
            if not prompted.is_set():
                continue
            try:
                if held:
                    proc.stdin.write(held)
                    proc.stdin.flush()
                    held = b""
                if eof:
                    proc.stdin.close()
                    return
            except OSError:
                return

    def wake_forwarder() -> None:
        prompted.set()

    threading.Thread(target=forward, daemon=True).start()
    seen = b""
    out = sys.stdout.buffer
    plain = not sys.stdout.isatty()
    while True:
        chunk = proc.stdout.read1(4096)
        if not chunk:
            break
        if plain:  # the line editor's cursor query (ESC [6n) means nothing in a file or a pipe
            chunk = chunk.replace(b"\x1b[6n", b"")
        out.write(chunk)
        out.flush()
        if not prompted.is_set():
            seen = (seen + chunk)[-len(PROMPT) - 64:]
            if PROMPT in seen:
                wake_forwarder()


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
        piped = not sys.stdin.isatty()
        try:
            if piped:  # commands from a pipe or a file: typed at the prompt, as a user would
                proc = machine.start_qemu(argv, (initrd,), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                threading.Thread(target=feed_at_prompt, args=(proc,), daemon=True).start()
            else:
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
