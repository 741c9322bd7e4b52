/* pipe_sigio.c - how many signals do N events make?  SIGIO vs F_SETSIG.
 *
 * The read end of a pipe is put in signal-driven mode (F_SETOWN, O_ASYNC).
 * With the signal blocked, the program writes N bytes one write(2) at a
 * time (each write is one POLL_IN event), then unblocks and counts the
 * deliveries:
 *
 *   pipe_sigio              plain SIGIO: one delivery, si_code SI_KERNEL
 *   pipe_sigio --rt         F_SETSIG SIGRTMIN: N deliveries, si_code
 *                           POLL_IN, si_fd the read end, si_band 0x41
 *   pipe_sigio --rt --limit L
 *                           RLIMIT_SIGPENDING = L: the RT queue overflows,
 *                           and the kernel falls back to one plain SIGIO
 *
 * The handler counts in C11 lock-free atomics: ISO C lets a handler store
 * to a volatile sig_atomic_t, but not read it or ++ it; a lock-free atomic
 * object it may use in every way.
 *
 * usage: pipe_sigio [--rt] [--limit L] [N]     (N defaults to 10)
 */
#define _GNU_SOURCE			/* F_SETSIG */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(EXIT_FAILURE);
}

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic_int must be lock-free");

/* What the handler saw; main prints it after the deliveries. */
static atomic_int n_rt, n_io, code_rt, fd_rt, band_rt, code_io;

static void on_signal(int sig, siginfo_t *si, void *ucontext)
{
	(void)ucontext;
	if (sig == SIGIO) {
		atomic_fetch_add(&n_io, 1);
		atomic_store(&code_io, si->si_code);
	} else {
		atomic_fetch_add(&n_rt, 1);
		atomic_store(&code_rt, si->si_code);
		atomic_store(&fd_rt, si->si_fd);
		atomic_store(&band_rt, (int)si->si_band);
	}
}

static void usage(const char *prog)
{
	fprintf(stderr, "usage: %s [--rt] [--limit L] [N]\n", prog);
	exit(EXIT_FAILURE);
}

int main(int argc, char *argv[])
{
	struct sigaction sa;
	sigset_t set, old;
	int rt = 0, n = 10, p[2], flags;
	long limit = -1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--rt") == 0)
			rt = 1;
		else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc)
			limit = strtol(argv[++i], NULL, 10);
		else if (argv[i][0] != '-')
			n = atoi(argv[i]);
		else
			usage(argv[0]);
	}
	if (n < 1 || n > 1000 || (limit != -1 && limit < 1))
		usage(argv[0]);

	if (limit > 0) {
		struct rlimit rl;

		if (getrlimit(RLIMIT_SIGPENDING, &rl) == -1)
			die("getrlimit");
		rl.rlim_cur = (rlim_t)limit;
		if (setrlimit(RLIMIT_SIGPENDING, &rl) == -1)
			die("setrlimit");
	}

	/* Handlers first, with both signals blocked until we count. */
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO;
	if (sigaction(SIGIO, &sa, NULL) == -1 ||
	    sigaction(SIGRTMIN, &sa, NULL) == -1)
		die("sigaction");
	sigemptyset(&set);
	sigaddset(&set, SIGIO);
	sigaddset(&set, SIGRTMIN);
	if (sigprocmask(SIG_BLOCK, &set, &old) == -1)
		die("sigprocmask");

	if (pipe(p) == -1)
		die("pipe");
	if (fcntl(p[0], F_SETOWN, getpid()) == -1)
		die("fcntl F_SETOWN");
	if (rt && fcntl(p[0], F_SETSIG, SIGRTMIN) == -1)
		die("fcntl F_SETSIG");
	flags = fcntl(p[0], F_GETFL);
	if (flags == -1)
		die("fcntl F_GETFL");
	if (fcntl(p[0], F_SETFL, flags | O_ASYNC | O_NONBLOCK) == -1)
		die("fcntl F_SETFL");

	for (int i = 0; i < n; i++)
		if (write(p[1], "x", 1) != 1)
			die("write");
	printf("%d writes with %s blocked; unblocking\n", n,
	       rt ? "SIGRTMIN" : "SIGIO");
	fflush(stdout);
	if (sigprocmask(SIG_SETMASK, &old, NULL) == -1)
		die("sigprocmask");

	printf("SIGRTMIN deliveries: %d", atomic_load(&n_rt));
	if (atomic_load(&n_rt))
		printf(" (si_code %d = POLL_IN %d, si_fd %d, si_band %#x)",
		       atomic_load(&code_rt), POLL_IN, atomic_load(&fd_rt),
		       (unsigned)atomic_load(&band_rt));
	printf("\nSIGIO deliveries:    %d", atomic_load(&n_io));
	if (atomic_load(&n_io))
		printf(" (si_code %d%s)", atomic_load(&code_io),
		       atomic_load(&code_io) == SI_KERNEL ? " = SI_KERNEL" : "");
	printf("\n");
	return EXIT_SUCCESS;
}
