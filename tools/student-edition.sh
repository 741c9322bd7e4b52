#!/bin/sh
# student-edition.sh - make the edition handed out to students.
#
# It is the committed tree (HEAD) without what would give the answers away:
# solutions/, the hostile corpus (some of its cases are broken copies of the
# solutions) and the project's own tests that need them. What a student needs
# is all there: the chapters and starter code (labs/), the grader with every
# graded test, the button board, the VM, the slides; `make submission` (a zip of
# labs/ for Gradescope); and the GitHub Classroom workflow, written from
# tools/classroom/grade.yml to .github/workflows/grade.yml: it runs `make grade`
# on every push and reports the points per lab (tools/points.py). Its score is
# advisory (the student controls it): the grade of record comes from
# grader/grade-all or the Gradescope archive (make autograder).
#
# With --through N the edition has labs 1 to N only: a later lab's chapter,
# starter, tests and slides stay out, and so does the reference a later lab is
# graded against (grader/reference/NN-*: lab NN's solution, which labs NN+1
# and later start from). Lab 4 starts from a working lab 3 driver, so hand out
# `--through 4` only after lab 3's deadline; each new edition is a superset of
# the last, so a course can give students the next one as a new commit.
#
# Usage: tools/student-edition.sh [--through N] DIR     (DIR must not exist yet)
set -eu

usage() { echo "usage: $0 [--through N] DIR" >&2; exit 2; }
through=""
if [ "${1:-}" = "--through" ]; then
	[ $# -ge 2 ] || usage
	through=$2
	shift 2
	case "$through" in ''|*[!0-9]*) usage ;; esac
fi
[ $# -eq 1 ] || usage
out=$1
[ -e "$out" ] && { echo "student-edition: $out exists; choose a new folder" >&2; exit 1; }
root=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)

# Paths of HEAD that belong to a lab after N (NN-* folders and files, test_labNN_*),
# or that are lab NN's reference with NN >= N: whole folders, so none is left empty.
later() {
	git -C "$root" ls-tree -r --name-only HEAD | awk -v n="$through" '
		function num(s) { return s + 0 }
		function out(p) { if (!(p in seen)) { seen[p] = 1; print p } }
		{
			split($0, part, "/")
			base = part[length(part)]
			if (($1 ~ /^labs\// || $1 ~ /^slides\//) && match(part[2], /^[0-9][0-9]-/) && num(substr(part[2], 1, 2)) > n) out(part[1] "/" part[2])
			else if ($0 ~ /^grader\/tests\/test_lab[0-9][0-9]_/ && num(substr(base, 9, 2)) > n) out($0)
			else if ($0 ~ /^grader\/reference\/[0-9][0-9]-/ && num(part[3]) >= n) out("grader/reference/" part[3])
		}'
}

mkdir -p "$out"
excludes=$(mktemp)
trap 'rm -f "$excludes"' EXIT
printf '%s\n' solutions grader/hostile grader/selftests tools/mkstarter.py tools/student-edition.sh tools/classroom >"$excludes"
[ -n "$through" ] && later >>"$excludes"
git -C "$root" archive --format=tar HEAD | tar -x -C "$out" --exclude-from="$excludes"
find "$out" -depth -type d -empty -delete   # the folders of what was left out
if [ -n "$through" ]; then
	# The tables of labs in README.md and labs/README.md: rows of later labs go.
	for f in "$out/README.md" "$out/labs/README.md"; do
		[ -f "$f" ] || continue
		awk -v n="$through" '/^\| [0-9]+ \|/ { split($0, c, "|"); if (c[2] + 0 > n) next } { print }' "$f" >"$f.tmp"
		mv "$f.tmp" "$f"
	done
fi
mkdir -p "$out/.github/workflows"
git -C "$root" show HEAD:tools/classroom/grade.yml >"$out/.github/workflows/grade.yml"
echo "student-edition: wrote $out (from $(git -C "$root" rev-parse --short HEAD)${through:+, labs 1 to $through}); give it to students as a new repository"
