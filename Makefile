# The Signal-Driven I/O Workbook
#
#   make grade                  grade your labs (labs/): points per task and the next step
#   make grade LAB=2            grade one lab (TASK=5: one task; TEST=name: one test)
#                               (a lab not changed since its last grade is not graded again:
#                               FRESH=1 grades everything anew; V=1 prints every test and message)
#   make watch LAB=2            grade lab 2 again each time one of its files is saved (Ctrl-C stops)
#   make grade SUBMISSION=DIR   grade another folder (for example solutions)
#   make vm                     a shell in the lab VM (Debian's kernel in QEMU)
#   KERNEL=trixie               with fetch, grade, vm: the second guest, Debian 13's 6.12 (vm/kernels.json)
#   make vm LAB=3               ... with lab 3's module and programs in /lab
#   make doctor                 check this machine for what the labs need, and say how to fix it
#   make test                   the project's own tests (for maintainers and CI)
#   make host-check HOST=trixie a new user's make grade in a fresh Debian 13 root (bookworm: 12), as root;
#                               KERNEL=trixie: with that guest
#   make bench                  boot, command and grading times, the student's loop; lab 1's hang; lab 6's mechanisms;
#                               both guest kernels side by side
#   make plot LAB=4             a lab's figure or table, measured in the VM (labs/04-*/bursts.svg)
#   make starter                regenerate labs/ starter code from solutions/
#   make slides                 build the lecture decks into slides/out/
#   make autograder             the Gradescope autograder archive: build/autograder.zip (LABS="1 2": which labs)
#   make submission             labs/ as a zip to hand in (Gradescope): build/submission.zip
#
# Every target installs what it needs first (tools/deps.sh: apt-get as root,
# sudo -n otherwise, or it prints the command to run).

SHELL := /bin/sh
# A Python that has pytest: `python3` on PATH may be another interpreter.
PY = $(shell for p in python3 /usr/bin/python3; do $$p -c 'import pytest' >/dev/null 2>&1 && { echo $$p; exit 0; }; done; echo /usr/bin/python3)
SUBMISSION ?= labs
LAB ?=
TASK ?=
TEST ?=
REPEAT ?= 1
FRESH ?=
V ?=
LABS ?=
TIME_LIMIT ?=
# The guest kernel, a name in vm/kernels.json (its default when empty): reaches vm/ and the grader as
# WORKBOOK_KERNEL.
KERNEL ?=
ifneq ($(KERNEL),)
export WORKBOOK_KERNEL := $(KERNEL)
endif

.PHONY: all deps fetch doctor grade watch autograder submission test selftest proof vm bench host-check plot starter starter-check clean help slides slides-deps slides-debs slides-check

all: help

help:
	@sed -n '3,24p' Makefile | sed 's/^# \{0,1\}//'

deps:
	@sh tools/deps.sh

doctor:
	@$(PY) tools/doctor.py

fetch: deps
	@$(PY) vm/fetch.py --quiet

grade: fetch
	@GRADE_VIA=make grader/grade $(if $(LAB),--lab $(LAB)) $(if $(TASK),--task $(TASK)) $(if $(TEST),-k $(TEST)) $(if $(filter-out 1,$(REPEAT)),--repeat $(REPEAT)) $(if $(filter 1,$(FRESH)),--fresh) $(if $(filter 1,$(V)),--verbose) $(SUBMISSION)

# Grade lab LAB again at every save of one of its files (tools/watch.py: the kernel's inotify).
watch: fetch
	@if [ -z "$(LAB)" ]; then echo "make watch: say which lab, e.g. make watch LAB=1"; exit 2; fi
	@GRADE_VIA=make $(PY) tools/watch.py --lab $(LAB) $(if $(TEST),--test $(TEST)) $(SUBMISSION)

# Gradescope: the archive to upload as an assignment's autograder (tools/autograder.py), and a
# student's labs/ as a zip to upload as a submission (sources only).
autograder: fetch
	@$(PY) tools/autograder.py $(if $(LABS),--labs "$(LABS)") $(if $(TIME_LIMIT),--time-limit $(TIME_LIMIT))

submission:
	@$(PY) tools/submission.py

# The project's own tests: starter drift, the grader's and the VM's own tests,
# full marks for the solutions (every test 3 times), every graded test failing
# on the untouched starter, and the hostile submissions.  In TEST_JOBS processes (pytest-xdist; one
# more than the cores: the tests mostly wait on VMs and timeouts), then the tests marked `alone` one at
# a time (grader/selftests/conftest.py says which and why).
TEST_JOBS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: fetch slides-deps
	@if [ ! -d solutions ]; then echo "make test: this is the student edition (no solutions, no project tests); run make grade"; exit 1; fi
	@sh tools/deps.sh --test
	@$(PY) tools/mkstarter.py --check
	@cd grader && if $(PY) -c 'import xdist' 2>/dev/null; then \
		echo "make test: the project's tests in $(TEST_JOBS) processes, then those that run alone"; \
		$(PY) -m pytest -q --durations=15 -n $(TEST_JOBS) --dist loadgroup -m 'not alone' selftests; side=$$?; \
		$(PY) -m pytest -q --durations=5 -m alone selftests && exit $$side; \
	else echo "make test: no pytest-xdist for $(PY): one test at a time"; $(PY) -m pytest -q --durations=15 selftests; fi

# A host proven from scratch (tools/host-check.sh): an mmdebstrap root of HOST, a fresh clone, make grade,
# then full marks for the solutions. Minutes, root and the network: not part of make test (CI: .ci/run with
# WORKBOOK_HOST_CHECK=trixie).
HOST ?= trixie
host-check:
	@sh tools/host-check.sh $(HOST)

starter:
	@$(PY) tools/mkstarter.py

starter-check:
	@$(PY) tools/mkstarter.py --check

vm: fetch
	@$(PY) vm/shell.py $(if $(LAB),--lab $(LAB)) $(if $(filter-out labs,$(SUBMISSION)),--submission $(SUBMISSION))

bench: fetch
	@$(PY) vm/bench.py
	@$(PY) grader/bench.py
	@$(PY) grader/bench_loop.py
	@$(PY) grader/bench_hang.py
	@$(PY) grader/bench_autograder.py
	@$(PY) grader/bench_guests.py
	@$(PY) tools/plots/lab6-mechanisms.py

# The decks: Marp CLI and puppeteer-core pinned by slides/package-lock.json,
# installed into slides/node_modules once; Debian's chromium for the PDFs
# and the check (slides/check.mjs, run by make test).
SLIDES_NPM = slides/node_modules/.installed

slides: slides-deps
	@node slides/build.mjs

slides-check: slides-deps
	@node slides/check.mjs

slides-deps: $(SLIDES_NPM)

slides-debs:
	@sh tools/deps.sh --slides

$(SLIDES_NPM): slides/package.json slides/package-lock.json | slides-debs
	@echo "slides: npm ci (Marp CLI, puppeteer-core) into slides/node_modules"
	@cd slides && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

# One script per figure or table: tools/plots/labN-*.py; a figure's writes its SVG into the lab's folder,
# a table's prints it (lab 5); lab 6's does both, and make bench runs it too.
plot: fetch
	@sh tools/deps.sh --plot
	@set -e; ls tools/plots/lab$(or $(LAB),4)-*.py >/dev/null 2>&1 || { echo "make plot: no figure for lab $(LAB)"; exit 1; }; \
	for f in tools/plots/lab$(or $(LAB),4)-*.py; do $(PY) $$f; done

clean:
	rm -rf grader/out build slides/out
