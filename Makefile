# The Signal-Driven I/O Workbook
#
#   make grade                  grade your labs (labs/): points per task and the next step
#   make grade LAB=2            grade one lab
#   make grade SUBMISSION=DIR   grade another folder (for example solutions)
#   make vm                     a shell in the lab VM (Debian's kernel in QEMU)
#   make vm LAB=3               ... with lab 3's module and programs in /lab
#   make test                   the project's own tests (for maintainers and CI)
#   make bench                  boot, command and grading times
#   make plot LAB=4             a lab's figure, measured in the VM (labs/04-*/bursts.svg)
#   make starter                regenerate labs/ starter code from solutions/
#
# Every target installs what it needs first (tools/deps.sh: apt-get as root,
# sudo -n otherwise, or it prints the command to run).

SHELL := /bin/sh
# A Python that has pytest: `python3` on PATH may be another interpreter.
PY = $(shell for p in python3 /usr/bin/python3; do $$p -c 'import pytest' >/dev/null 2>&1 && { echo $$p; exit 0; }; done; echo /usr/bin/python3)
SUBMISSION ?= labs
LAB ?=
REPEAT ?= 1

.PHONY: all deps fetch grade test selftest proof vm bench plot starter starter-check clean help

all: help

help:
	@sed -n '3,14p' Makefile | sed 's/^# \{0,1\}//'

deps:
	@sh tools/deps.sh

fetch: deps
	@$(PY) vm/fetch.py --quiet

grade: fetch
	@grader/grade $(if $(LAB),--lab $(LAB)) $(if $(filter-out 1,$(REPEAT)),--repeat $(REPEAT)) $(SUBMISSION)

# The project's own tests: starter drift, the grader's and the VM's own tests,
# full marks for the solutions (every test 3 times), every graded test failing
# on the untouched starter, and the hostile submissions.
test: fetch
	@if [ ! -d solutions ]; then echo "make test: this is the student edition (no solutions, no project tests); run make grade"; exit 1; fi
	@$(PY) tools/mkstarter.py --check
	@cd grader && $(PY) -m pytest -q selftests

starter:
	@$(PY) tools/mkstarter.py

starter-check:
	@$(PY) tools/mkstarter.py --check

vm: fetch
	@$(PY) vm/shell.py $(if $(LAB),--lab $(LAB)) $(if $(filter-out labs,$(SUBMISSION)),--submission $(SUBMISSION))

bench: fetch
	@$(PY) vm/bench.py
	@$(PY) grader/bench.py

# One script per figure: tools/plots/labN-*.py, each writes its SVG into the lab's folder.
plot: fetch
	@sh tools/deps.sh --plot
	@set -e; ls tools/plots/lab$(or $(LAB),4)-*.py >/dev/null 2>&1 || { echo "make plot: no figure for lab $(LAB)"; exit 1; }; \
	for f in tools/plots/lab$(or $(LAB),4)-*.py; do $(PY) $$f; done

clean:
	rm -rf grader/out build
