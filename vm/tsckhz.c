/* tsckhz.c - print this machine's TSC frequency in kHz.

   Under TCG, QEMU's guest TSC is the host's TSC, and the guest kernel's own
   calibration of it against the emulated PIT sometimes fails (the PIT is
   read through slow emulated port I/O), which leaves the boot hanging or the
   clock wrong. vm/machine.py measures the frequency here once and passes it
   to the guest as tsc_early_khz=, so every boot uses the same, right value.

   Method: count TSC ticks over 200 ms of CLOCK_MONOTONIC_RAW, take the
   median of three measurements.

   Usage: tsckhz
*/
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <x86intrin.h>

static double now(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC_RAW, &ts) == -1) {
		perror("clock_gettime");
		exit(EXIT_FAILURE);
	}
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double measure(void)
{
	double t0 = now(), t1;
	unsigned long long c0 = __rdtsc(), c1;

	while ((t1 = now()) - t0 < 0.2)
		;
	c1 = __rdtsc();
	return (c1 - c0) / (t1 - t0) / 1000.0;
}

int main(int argc, char *argv[])
{
	double a, b, c, m;

	if (argc > 1) {
		fprintf(stderr, "Usage: %s\n", argv[0]);
		return EXIT_FAILURE;
	}
	a = measure();
	b = measure();
	c = measure();
	m = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
	printf("%.0f\n", m);
	return EXIT_SUCCESS;
}
