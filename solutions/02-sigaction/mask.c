/* mask.c - sa_mask: which signals wait while a handler runs.
 *
 * While a handler installed with sigaction(2) runs, the kernel blocks the
 * signal being handled (unless SA_NODEFER) plus every signal in the
 * handler's sa_mask.  A blocked signal is not lost: it stays pending and is
 * delivered the moment the handler returns and the old mask comes back.
 *
 * Here the SIGUSR1 handler raises SIGUSR2 in its middle, and both handlers
 * append to a trace.  With SIGUSR2 in on_usr1's sa_mask, SIGUSR2 waits:
 *
 *     trace: usr1-begin usr1-end usr2
 *
 * With an empty sa_mask (option --empty-mask), SIGUSR2 interrupts on_usr1:
 *
 *     trace: usr1-begin usr2 usr1-end
 *
 * usage: mask [--empty-mask]
 *
 * It prints "ready (pid N)", waits for a line on stdin (send SIGUSR1
 * before it), prints the trace and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(EXIT_FAILURE);
}

enum event { USR1_BEGIN = 1, USR1_END, USR2 };

static volatile sig_atomic_t trace[16];
static volatile sig_atomic_t ntrace;

static void record(enum event e)
{
	if (ntrace < (sig_atomic_t)(sizeof(trace) / sizeof(trace[0])))
		trace[ntrace++] = e;
}

static void on_usr1(int sig)
{
	(void)sig;
	record(USR1_BEGIN);
	raise(SIGUSR2);		/* async-signal-safe */
	record(USR1_END);
}

static void on_usr2(int sig)
{
	(void)sig;
	record(USR2);
}

/* Read stdin up to a newline or end of file; a signal may interrupt read(). */
static void wait_for_line(void)
{
	char c;
	ssize_t n;

	do {
		n = read(STDIN_FILENO, &c, 1);
		if (n == -1 && errno != EINTR)
			die("read stdin");
	} while (n != 0 && !(n == 1 && c == '\n'));
}

int main(int argc, char *argv[])
{
	static const char *const names[] = { "?", "usr1-begin", "usr1-end", "usr2" };
	int empty_mask = 0;
	if (argc == 2 && strcmp(argv[1], "--empty-mask") == 0) {
		empty_mask = 1;
	} else if (argc != 1) {
		fprintf(stderr, "usage: %s [--empty-mask]\n", argv[0]);
		return EXIT_FAILURE;
	}

	/* Both handlers: sa_flags SA_RESTART; on_usr2's sa_mask empty; on_usr1's sa_mask holds SIGUSR2 unless empty_mask. */
	/* TODO 1: install on_usr2 for SIGUSR2 and on_usr1 for SIGUSR1 with sigaction(2). */
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr2;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGUSR2, &sa, NULL) == -1)
		die("sigaction(SIGUSR2)");
	sa.sa_handler = on_usr1;
	if (!empty_mask)
		sigaddset(&sa.sa_mask, SIGUSR2);
	if (sigaction(SIGUSR1, &sa, NULL) == -1)
		die("sigaction(SIGUSR1)");
	//> (void)on_usr1;	/* not installed yet */
	//> (void)on_usr2;
	//> (void)empty_mask;
	/* END TODO */

	printf("ready (pid %ld)\n", (long)getpid());
	if (fflush(stdout) == EOF)
		die("fflush");
	wait_for_line();

	printf("trace:");
	for (int i = 0; i < ntrace; i++)
		printf(" %s", trace[i] >= 1 && trace[i] <= 3 ? names[trace[i]] : names[0]);
	printf("\n");
	if (fflush(stdout) == EOF)
		die("fflush");
	return EXIT_SUCCESS;
}
