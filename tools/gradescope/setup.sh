#!/bin/bash
# setup.sh - Gradescope runs this once, as root, when it builds the autograder's image.
#
# The image must be Gradescope's Ubuntu 22.04 base image (Autograder settings: Base Image
# OS Ubuntu, Version 22.04): this script checks it and stops on anything else. It installs
# only Ubuntu's own packages (Debian's archive may be out of reach there), unpacks the
# workbook's grader and the VM's kernel, headers and busybox carried in workbook.tar.gz,
# makes the user student code runs as, checks the versions the grader needs, and boots the
# VM once (which also builds what every grading reuses: the button board, the reference driver).
#
# What is derived from the solutions (grader/reference/, lab 3's driver, which labs 4-6 are graded
# against; workbook.tar.gz, which carries it; the grader's build cache, which holds the driver built)
# is root's alone (gradelib/autograder.py, --check): student code runs as $SANDBOX_USER, and where
# there are no namespaces (Gradescope's container) it sees the file system with that user's rights.
#
# AUTOGRADER_ROOT (default /autograder) and WORKBOOK_SETUP=grader-only (skip the OS check,
# the packages and the user: unpack, check, boot) are for trying it outside Gradescope.
set -euo pipefail

ROOT=${AUTOGRADER_ROOT:-/autograder}
SRC=$ROOT/source
BASE_OS=ubuntu
BASE_VERSION=22.04
SANDBOX_USER=student
PY=/usr/bin/python3  # Ubuntu's, with python3-pytest (not one a PATH may put first)
# gcc-12: Debian's kernel config adds -ftrivial-auto-var-init=zero (22.04's default gcc 11 lacks it),
# and its kbuild calls gcc-12 by name. libc6-dev: static programs (the VM's agent, the board's tool).
PACKAGES="gcc-12 libc6-dev make binutils libelf1 qemu-system-x86 python3 python3-pytest cpio bubblewrap util-linux procps passwd"

say() { echo "setup.sh: $*"; }
die() { echo "setup.sh: $*" >&2; exit 1; }

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

if [ "${WORKBOOK_SETUP:-}" != grader-only ]; then
	. /etc/os-release
	[ "${ID:-}" = "$BASE_OS" ] && [ "${VERSION_ID:-}" = "$BASE_VERSION" ] ||
		die "this autograder is made for Gradescope's Ubuntu $BASE_VERSION base image; this is ${PRETTY_NAME:-unknown}. Choose Ubuntu $BASE_VERSION in the autograder's settings."
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $PACKAGES
	# `gcc` is gcc 12 for everything the grader builds (kbuild names gcc-12 itself).
	ln -sf /usr/bin/gcc-12 /usr/local/bin/gcc
	ln -sf /usr/bin/gcc-12 /usr/local/bin/cc
	if ! id -u "$SANDBOX_USER" >/dev/null 2>&1; then
		useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$SANDBOX_USER"
	fi
	[ "$(id -u "$SANDBOX_USER")" -ne 0 ] || die "the user $SANDBOX_USER is root"
fi
export PATH=/usr/local/bin:$PATH

say "unpacking the grader and the VM's kernel into $SRC/workbook"
rm -rf "$SRC/workbook"
mkdir -p "$SRC/workbook"
tar -xzf "$SRC/workbook.tar.gz" -C "$SRC/workbook" --no-same-owner
# The grader's files and the results are root's: the user student code runs as cannot change them
# (nor read what is derived from the solutions: the check below makes it root's alone).
chmod -R go-w "$SRC"
mkdir -p "$ROOT/results"
chmod 755 "$ROOT/results"

say "checking versions"
problems=0
need() { # need WHAT FOUND OK
	if [ "$3" = yes ]; then say "  ok: $1: $2"; else echo "setup.sh:   PROBLEM: $1: $2" >&2; problems=$((problems + 1)); fi
}
v=$(gcc -dumpfullversion 2>/dev/null || echo none)
ok=no; version_ge "$v" 12 && echo 'int x;' | gcc -ftrivial-auto-var-init=zero -x c -c -o /dev/null - 2>/dev/null && ok=yes
need "gcc 12 or later, with -ftrivial-auto-var-init=zero (the kernel's flags)" "gcc $v" $ok
v=$(gcc-12 -dumpfullversion 2>/dev/null || echo none)
ok=no; version_ge "$v" 12 && ok=yes
need "gcc-12 (kbuild calls it by name)" "$v" $ok
v=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
ok=no; version_ge "${v:-0}" 2.34 && ok=yes
need "glibc 2.34 or later (the kernel headers' kbuild tools are built against it)" "glibc ${v:-none}" $ok
v=$(qemu-system-x86_64 --version 2>/dev/null | head -n1 | sed -n 's/.*version \([0-9.]*\).*/\1/p')
ok=no; version_ge "${v:-0}" 6.2 && ok=yes
need "QEMU 6.2 or later (microvm, PVH boot)" "qemu ${v:-none}" $ok
v=$($PY -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none)
ok=no; version_ge "$v" 3.10 && $PY -c 'import pytest' 2>/dev/null && ok=yes
need "Python 3.10 or later with pytest" "python $v" $ok
ok=no; setpriv --help 2>/dev/null | grep -q -- --pdeathsig && ok=yes
need "setpriv with --pdeathsig (util-linux 2.33 or later)" "$(command -v setpriv || echo none)" $ok
for tool in make ld objdump bwrap pgrep; do
	ok=no; command -v "$tool" >/dev/null && ok=yes
	need "$tool" "$(command -v "$tool" || echo missing)" $ok
done
[ "$problems" -eq 0 ] || die "$problems problem(s) above"

say "building the button board and a module, booting the VM once"
cd "$SRC/workbook/grader"
if id -u "$SANDBOX_USER" >/dev/null 2>&1; then export GRADER_SANDBOX_USER=$SANDBOX_USER; fi
PYTHONPATH=. $PY -m gradelib.autograder --root "$ROOT" --check
chmod -R go-w "$SRC"
say "done"
