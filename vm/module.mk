# vm/module.mk - build a lab's kernel module against the VM kernel's headers.
#
# A lab Makefile sets MODULE_DIR (the folder with the Kbuild file and the
# sources; default: the including Makefile's folder) and includes this file:
#
#     include ../../vm/module.mk
#
# Targets: `modules` (build into $(MODULE_OUT)), `modules-w1` (with W=1),
# `modules-clean`. The headers come from vm/cache (fetched by vm/fetch.py:
# Debian's linux-headers for the VM's kernel, never the host's).

WORKBOOK_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
MODULE_DIR ?= $(abspath $(dir $(firstword $(MAKEFILE_LIST))))
MODULE_OUT ?= $(MODULE_DIR)/build
WORKBOOK_PY ?= $(shell for p in python3 /usr/bin/python3; do command -v $$p >/dev/null 2>&1 && { echo $$p; break; }; done)

.PHONY: modules modules-w1 modules-clean

modules:
	@$(WORKBOOK_PY) $(WORKBOOK_ROOT)/vm/fetch.py --quiet >/dev/null
	$(WORKBOOK_PY) $(WORKBOOK_ROOT)/vm/kmod.py $(MODULE_DIR) $(MODULE_OUT)

modules-w1:
	@$(WORKBOOK_PY) $(WORKBOOK_ROOT)/vm/fetch.py --quiet >/dev/null
	$(WORKBOOK_PY) $(WORKBOOK_ROOT)/vm/kmod.py --w1 $(MODULE_DIR) $(MODULE_OUT)

modules-clean:
	rm -rf $(MODULE_OUT)
