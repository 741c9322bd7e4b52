"""The workbook's VM: fetch the kernel, build modules and initramfs, boot and drive QEMU."""
