/* oneshot_trap.c - the same source, two meanings of signal(2).
 *
 * The program installs a SIGUSR1 handler with signal() and sends itself
 * SIGUSR1 twice with raise(3).  Built with -std=gnu11 (glibc's BSD
 * semantics) the handler runs twice and the program exits 0.  Built with
 * -std=c11 (strict ISO C: no _DEFAULT_SOURCE, so glibc's signal() is the
 * System V one) the disposition is reset to SIG_DFL when the first signal is
 * delivered, and the second SIGUSR1 kills the process.
 *
 * No feature-test macro on purpose: defining _POSIX_C_SOURCE (or
 * _XOPEN_SOURCE) alone also turns _DEFAULT_SOURCE off, and then even
 * -std=gnu11 gets the System V signal().  Only _DEFAULT_SOURCE (implied by
 * gnu11 or _GNU_SOURCE) selects the BSD one.
 *
 * usage: oneshot_trap        (build: make -C slides/demos)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(EXIT_FAILURE);
}

static void on_usr1(int sig)
{
	static const char msg[] = "handler ran\n";

	(void)sig;
	(void)!write(STDOUT_FILENO, msg, sizeof(msg) - 1);
}

int main(int argc, char *argv[])
{
	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: oneshot_trap\n");
		return EXIT_FAILURE;
	}
	if (signal(SIGUSR1, on_usr1) == SIG_ERR)
		die("signal");
	for (int i = 1; i <= 2; i++) {
		printf("raise #%d\n", i);
		fflush(stdout);
		if (raise(SIGUSR1) != 0)
			die("raise");
	}
	printf("survived both\n");
	return EXIT_SUCCESS;
}
