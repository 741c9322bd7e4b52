#!/bin/sh
# deps.sh - make sure the Debian packages the workbook needs are installed.
#
# Checks with dpkg-query (fast, no root needed) and installs only what is
# missing: as root with apt-get, otherwise through `sudo -n`, otherwise it
# prints the exact command to run and fails.  It never touches /boot,
# /lib/modules or the running kernel: the VM's kernel is fetched separately
# into vm/cache by vm/fetch.py.
#
# Usage: tools/deps.sh [--check] [--slides] [--plot] [--test]
#   --check   report, install nothing
#   --slides  also what the slides need (make slides, make test): Debian's
#             chromium, the fonts the slide theme names, and Node.js with npm
#             when there is no node (Debian 12's nodejs 18 is enough)
#   --plot    also what the figures need (make plot): gnuplot-nox
#   --test    also what make test needs: pytest-xdist (the project's tests in
#             several processes; grader/selftests/conftest.py)
set -eu

SUPPORTED="Debian 12 and 13, Ubuntu 22.04 and 24.04, or the dev container (.devcontainer/; README: On macOS or Windows)"

# The host: the same packages have other names on the supported distributions. libelf: the kbuild
# objtool binary links it (libelf1t64 since the 64-bit time_t transition: Debian 13, Ubuntu 24.04).
# gcc-12 on Ubuntu: Debian 12's kernel names gcc-12 in its config (kbuild calls it by that name) and
# uses -ftrivial-auto-var-init=zero, which 22.04's gcc 11 lacks; Debian 12's gcc is gcc 12, and on
# Debian 13 (gcc 14) vm/kmod.py builds with gcc and turns off what gcc 14 cannot honour.
# WORKBOOK_HOST=ID:VERSION (for example debian:13) names the host when /etc/os-release is not read.
host=${WORKBOOK_HOST:-}
if [ -z "$host" ] && [ -r /etc/os-release ]; then
	host=$(. /etc/os-release && echo "${ID:-}:${VERSION_ID:-}")
fi
case "$host" in
debian:12) libelf=libelf1 extra="" ;;
debian:13 | debian:) libelf=libelf1t64 extra="" ;;  # 13, or testing/sid (no VERSION_ID)
ubuntu:22.04) libelf=libelf1 extra="gcc-12" ;;
ubuntu:24.04) libelf=libelf1t64 extra="gcc-12" ;;
*)
	echo "deps: this host (${host:-no /etc/os-release}) is not one the workbook supports: $SUPPORTED" >&2
	exit 1
	;;
esac
if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: this host has no apt (dpkg-query, apt-get); supported: $SUPPORTED" >&2
	exit 1
fi

# procps: pgrep in the tests; debian-archive-keyring: the guest kernel's private apt checks the
# archive with it; zstd: Debian 13's vmlinuz payload.
PACKAGES="gcc $extra make libc6-dev $libelf qemu-system-x86 python3 python3-pytest cpio bubblewrap util-linux procps debian-archive-keyring zstd"

check=""
for arg in "$@"; do
	case "$arg" in
	--check) check=1 ;;
	--slides)
		PACKAGES="$PACKAGES chromium fonts-dejavu-core"
		# A node from elsewhere (nodesource, nvm) is fine if it is 18 or later.
		if command -v node >/dev/null 2>&1; then
			major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
			if [ "$major" -lt 18 ]; then
				echo "deps: the slides need Node.js 18 or later; $(command -v node) is $(node --version)" >&2
				exit 1
			fi
			command -v npm >/dev/null 2>&1 || PACKAGES="$PACKAGES npm"
		else
			PACKAGES="$PACKAGES nodejs npm"
		fi
		;;
	--plot) PACKAGES="$PACKAGES gnuplot-nox" ;;
	--test) PACKAGES="$PACKAGES python3-pytest-xdist" ;;
	*) echo "usage: tools/deps.sh [--check] [--slides] [--plot] [--test]" >&2; exit 2 ;;
	esac
done

# One dpkg-query for all of them (it runs before every make grade): the installed ones, by name.
installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $PACKAGES 2>/dev/null | awk '$1 == "ii" {print $2}' || true)
missing=""
for p in $PACKAGES; do
	case " $(echo $installed) " in
	*" $p "*) ;;
	*) missing="$missing $p" ;;
	esac
done

[ -z "$missing" ] && exit 0

if [ -n "$check" ]; then
	echo "deps: missing Debian packages:$missing" >&2
	exit 1
fi

cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -eq 0 ]; then
	run=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	run="sudo -n"
else
	echo "deps: missing Debian packages:$missing" >&2
	echo "deps: run this as root, then try again:" >&2
	echo "    sudo sh -c '$cmd'" >&2
	exit 1
fi

echo "deps: installing$missing"
log=$(mktemp)
if ! $run sh -c "$cmd" >"$log" 2>&1; then
	echo "deps: apt-get failed (is Debian's package archive reachable?); last lines:" >&2
	tail -n 5 "$log" >&2
	rm -f "$log"
	exit 1
fi
rm -f "$log"
echo "deps: done"
