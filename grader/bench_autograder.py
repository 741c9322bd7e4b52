#!/usr/bin/env python3
"""The Gradescope autograder on a machine like Gradescope's: how long run_autograder takes to grade
the reference solutions on one core (taskset -c 0) with 768 MB of memory (make bench).

The archive is built (make autograder), unzipped into a simulated /autograder root and set up
(setup.sh without its system part: WORKBOOK_SETUP=grader-only), as test_autograder.py does; only
run_autograder is timed.  The memory limit is a cgroup when this machine lets us make one (v2
memory.max, or v1 memory.limit_in_bytes), else a watchdog that samples the resident memory of
run_autograder's whole tree and fails the run above the limit; the output says which.
Gradescope's default container has about half a CPU: expect up to twice this time there.

By default the sandbox's fallback is forced (GRADER_SANDBOX=none), as bubblewrap cannot run in
Gradescope's container.

usage: grader/bench_autograder.py [--labs "1 2 3"] [--memory-mb 768] [--cpu 0] [--sandbox fallback|auto]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

GRADER = Path(__file__).resolve().parent
REPO = GRADER.parent
sys.path.insert(0, str(GRADER))
from gradelib.sandbox import tree_rss  # noqa: E402


def own_cgroup(controller: str) -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(",") or (controller == "" and ctrls == ""):
            return path
    return "/"


def make_cgroup(limit: int) -> tuple[str, Path, Path, Path] | None:
    """A memory cgroup below ours: (what, cgroup.procs, the peak file, the failure counter), or None."""
    name = f"bench-autograder-{os.getpid()}"
    v2 = Path("/sys/fs/cgroup") / own_cgroup("").lstrip("/")
    if (Path("/sys/fs/cgroup") / "cgroup.controllers").is_file():
        try:
            d = v2 / name
            d.mkdir()
            (d / "memory.max").write_text(str(limit))
            (d / "memory.swap.max").write_text("0") if (d / "memory.swap.max").exists() else None
            return "cgroup v2 memory.max", d / "cgroup.procs", d / "memory.peak", d / "memory.events"
        except OSError:
            pass
    v1 = Path("/sys/fs/cgroup/memory") / own_cgroup("memory").lstrip("/")
    try:
        d = v1 / name
        d.mkdir()
        (d / "memory.limit_in_bytes").write_text(str(limit))
        return "cgroup v1 memory.limit_in_bytes", d / "cgroup.procs", d / "memory.max_usage_in_bytes", d / "memory.failcnt"
    except OSError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description="Time run_autograder on one core with 768 MB.")
    ap.add_argument("--labs", default="", help="the labs (default: every lab with tests)")
    ap.add_argument("--memory-mb", type=int, default=768)
    ap.add_argument("--cpu", type=int, default=0, help="the one core it may use")
    ap.add_argument("--sandbox", choices=["fallback", "auto"], default="fallback",
                    help="fallback (default: as in Gradescope's container, where bwrap cannot run) or auto")
    a = ap.parse_args()
    limit = a.memory_mb << 20
    tmp = Path(tempfile.mkdtemp(prefix="bench-autograder-"))
    os.chmod(tmp, 0o755)
    cg = None
    try:
        archive = tmp / "autograder.zip"
        subprocess.run(["/usr/bin/python3", str(REPO / "tools" / "autograder.py"), "--out", str(archive),
                        *(["--labs", a.labs] if a.labs else [])], check=True, stdout=subprocess.DEVNULL)
        root = tmp / "autograder"
        with zipfile.ZipFile(archive) as z:
            z.extractall(root / "source")
            for info in z.infolist():
                os.chmod(root / "source" / info.filename, (info.external_attr >> 16) & 0o777)
            conf = z.read("autograder.conf").decode()
        env = dict(os.environ, AUTOGRADER_ROOT=str(root))
        env.pop("GRADER_SANDBOX", None)
        if a.sandbox == "fallback":
            env["GRADER_SANDBOX"] = "none"
        res = subprocess.run(["bash", str(root / "source" / "setup.sh")], env=dict(env, WORKBOOK_SETUP="grader-only"),
                             capture_output=True, text=True)
        if res.returncode != 0:
            print(f"bench: setup.sh failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}", file=sys.stderr)
            return 1
        shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
        labs = next(line.split("=", 1)[1].strip('"') for line in conf.splitlines() if line.startswith("LABS="))
        for n in labs.split():
            src = next(SOLUTIONS.glob(f"{int(n):02d}-*"))
            shutil.copytree(src, root / "submission" / src.name)
        (root / "results").mkdir(exist_ok=True)

        cg = make_cgroup(limit)
        peak = [0]
        done = threading.Event()

        def enter_cgroup() -> None:
            if cg is not None:
                cg[1].write_text("0")  # this process, before it execs taskset

        proc = subprocess.Popen(["taskset", "-c", str(a.cpu), str(root / "run_autograder")], env=env, cwd=root,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=enter_cgroup)
        t0 = time.monotonic()
        if cg is None:
            def watch() -> None:
                while not done.wait(0.2):
                    peak[0] = max(peak[0], tree_rss(proc.pid))
                    if peak[0] > limit:
                        proc.kill()
            threading.Thread(target=watch, daemon=True).start()
        out, _ = proc.communicate()
        took = time.monotonic() - t0
        done.set()
        results = root / "results" / "results.json"
        data = json.loads(results.read_text()) if results.exists() else None
        if proc.returncode != 0 or data is None or data["score"] != data["max_score"]:
            print(f"bench: run_autograder did not give the solutions full marks (status {proc.returncode}):\n"
                  f"{out.decode(errors='replace')[-3000:]}", file=sys.stderr)
            return 1
        if cg is not None:
            what = cg[0]
            try:
                peak[0] = int(cg[2].read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
            hits = cg[3].read_text().strip().replace("\n", ", ")
            memory = f"{a.memory_mb} MB ({what}; peak {peak[0] >> 20} MB, limit hits: {hits})"
        else:
            memory = f"{a.memory_mb} MB (no cgroup here: a watchdog on the tree's resident memory; peak {peak[0] >> 20} MB)"
        mode = next((ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("Sandbox:")), "")
        print(f"Gradescope autograder (run_autograder on the solutions, labs {labs}): {took:.1f} s "
              f"on one core (taskset -c {a.cpu}) with {memory}")
        print(f"  {mode or 'Sandbox: not reported'}")
        print(f"  execution_time in results.json: {data['execution_time']} s; half a CPU may double it "
              f"(~{2 * took:.0f} s), inside Gradescope's default 10 minutes: {'yes' if 2 * took < 600 else 'NO'}")
        return 0
    finally:
        if cg is not None:
            try:
                cg[1].parent.rmdir()
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)


SOLUTIONS = REPO / "solutions"

if __name__ == "__main__":
    sys.exit(main())
