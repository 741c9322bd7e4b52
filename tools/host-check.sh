#!/bin/sh
# host-check.sh - prove a host: what a new user runs, in a fresh Debian root.
#
# Builds a minimal Debian root of SUITE (bookworm: Debian 12, trixie: Debian 13) with mmdebstrap,
# with only what the README assumes a user has (git, make, ca-certificates), from the mirror the
# guest kernel's fetch uses (vm/fetch.py's mirrors(): the host's apt sources, else
# WORKBOOK_DEBIAN_MIRROR). Then, in a chroot of it, as root:
#
#   git clone of this repository's HEAD   (a fresh clone: no vm/cache, nothing built)
#   make grade                             installs the packages (tools/deps.sh, the root's own apt),
#                                          fetches the guest kernel through the private apt; the
#                                          untouched starter fails, as it should
#   make grade SUBMISSION=solutions FRESH=1   must give full marks (exit status 0)
#
# It prints each step's time and the sandbox mode the grader used (bubblewrap, or its fallback
# when bwrap cannot make namespaces there). The root is bound onto itself (bwrap needs / to be a
# mount point), /proc, /sys and /dev are mounted for the run, and all is unmounted on any exit;
# the root is removed unless KEEP=1. No /dev/kvm is needed: QEMU falls back to TCG.
#
# Usage: tools/host-check.sh [SUITE]     (make host-check HOST=trixie; default trixie)
#   env: KEEP=1 keep the root (its path is printed); HOST_CHECK_DIR=DIR build it under DIR
#        (default /var/tmp); SUBMISSION_ARGS extra make arguments for both gradings (e.g. LAB=1);
#        WORKBOOK_KERNEL=NAME (make host-check KERNEL=trixie) every step with that guest kernel.
# Needs root (mmdebstrap's root mode and chroot) and the network. Takes many minutes.
set -eu

suite=${1:-trixie}
case "$suite" in
bookworm | trixie) ;;
*) echo "host-check: SUITE is bookworm (Debian 12) or trixie (Debian 13), not '$suite'" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
	echo "host-check: needs root (mmdebstrap and chroot); run: sudo make host-check HOST=$suite" >&2
	exit 1
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
if [ ! -d solutions ]; then
	echo "host-check: this is the student edition (no solutions to give full marks); run make grade" >&2
	exit 1
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
	echo "host-check: installing mmdebstrap"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mmdebstrap >/dev/null
fi

# The mirror: the very function the guest kernel's fetch uses (no second parser).
mirrors=$(cd vm && python3 -c 'import fetch, sys
try:
    print(*fetch.mirrors())
except fetch.FetchError as e:
    sys.exit(f"host-check: {e}")')
archive=${mirrors% *}
security=${mirrors#* }

root=$(mktemp -d "${HOST_CHECK_DIR:-/var/tmp}/workbook-host-$suite.XXXXXX")
log="$root.log"
mounted=""
cleanup() {
	status=$?
	for m in $mounted; do
		umount -R "$m" 2>/dev/null || umount -R -l "$m" 2>/dev/null || true
	done
	if [ -n "${KEEP:-}" ]; then
		echo "host-check: root kept in $root"
	else
		# Only when nothing is mounted below it any more: never remove through a mount.
		if ! grep -q " $root[/ ]" /proc/self/mounts; then
			rm -rf "$root"
		else
			echo "host-check: $root still has mounts; not removed" >&2
		fi
	fi
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

now() { date +%s; }
t0=$(now)
echo "host-check: Debian $suite root in $root (log: $log)"
mmdebstrap --variant=minbase --include=git,make,ca-certificates \
	"$suite" "$root" \
	"deb $archive $suite main" \
	"deb $archive $suite-updates main" \
	"deb $security $suite-security main" >"$log" 2>&1 || {
	echo "host-check: mmdebstrap failed; last lines of $log:" >&2
	tail -n 5 "$log" >&2
	exit 1
}
t1=$(now)
echo "host-check: root built in $((t1 - t0)) s ($(. "$root/etc/os-release" && echo "$PRETTY_NAME"))"

cp /etc/resolv.conf "$root/etc/resolv.conf"
git clone -q --no-hardlinks "$repo" "$root/root/workbook"
echo "host-check: fresh clone of $(git -C "$repo" rev-parse --short HEAD) in /root/workbook"

# The root bound onto itself: a chroot whose / is a mount point, as a host's is (bubblewrap makes
# / a slave mount, which fails on a plain folder, and the grader would then use its fallback).
mount --bind "$root" "$root" && mounted="$root"
mount --make-private "$root"
mount -t proc proc "$root/proc" && mounted="$root/proc $mounted"
mount -t sysfs sysfs "$root/sys" && mounted="$root/sys $mounted"
mount --rbind /dev "$root/dev" && mounted="$root/dev $mounted"
mount --make-rslave "$root/dev"

# The guest kernel a user would name (KERNEL=trixie), passed on into the root; none: the default.
guest=${WORKBOOK_KERNEL:+WORKBOOK_KERNEL=$WORKBOOK_KERNEL}
in_root() {
	chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb $guest \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		sh -c "cd /root/workbook && $1"
}

# The starter fails its tests: make grade's status is not the check here, what it installed is.
echo "host-check: make grade (installs, fetches, grades the starter)"
in_root "make grade ${SUBMISSION_ARGS:-}" >>"$log" 2>&1 || true
t2=$(now)
echo "host-check: make grade took $((t2 - t1)) s"
if ! in_root "sh tools/deps.sh --check && python3 -c 'import sys; sys.path[:0] = [\"vm\"]; import fetch; sys.exit(fetch.recorded_version() is None)'"; then
	echo "host-check: FAIL: make grade left packages missing or no guest kernel; last lines of $log:" >&2
	tail -n 15 "$log" >&2
	exit 1
fi
echo "host-check: $(in_root 'python3 vm/fetch.py --print guest')"

echo "host-check: make grade SUBMISSION=solutions FRESH=1"
out="$root.solutions"
status=0
in_root "make grade SUBMISSION=solutions FRESH=1 ${SUBMISSION_ARGS:-}" >"$out" 2>&1 || status=$?
cat "$out" >>"$log"
t3=$(now)
echo "host-check: solutions graded in $((t3 - t2)) s, exit status $status"
grep -m1 '^Sandbox:' "$root/root/workbook/grader/out/report.txt" 2>/dev/null ||
	grep -m1 'Sandbox:' "$out" || echo "host-check: (no sandbox line found)"
grep -E '[0-9]+ */ *[0-9]+' "$out" | tail -n 3
rm -f "$out"
if [ "$status" -ne 0 ]; then
	echo "host-check: FAIL: the solutions did not get full marks on Debian $suite; full log: $log" >&2
	exit 1
fi
echo "host-check: PASS: Debian $suite, full marks for the solutions, $((t3 - t0)) s in all (log: $log)"
