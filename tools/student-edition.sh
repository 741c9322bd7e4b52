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
# Usage: tools/student-edition.sh DIR        (DIR must not exist yet)
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
out=$1
[ -e "$out" ] && { echo "student-edition: $out exists; choose a new folder" >&2; exit 1; }
root=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)

mkdir -p "$out"
git -C "$root" archive --format=tar HEAD | tar -x -C "$out" \
	--exclude=solutions --exclude=grader/hostile --exclude=grader/selftests \
	--exclude=tools/mkstarter.py --exclude=tools/student-edition.sh --exclude=tools/classroom
mkdir -p "$out/.github/workflows"
git -C "$root" show HEAD:tools/classroom/grade.yml >"$out/.github/workflows/grade.yml"
echo "student-edition: wrote $out (from $(git -C "$root" rev-parse --short HEAD)); give it to students as a new repository"
