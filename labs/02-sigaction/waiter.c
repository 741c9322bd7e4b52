/* waiter.c - wait for a signal without losing it: sigsuspend().
 *
 * The tempting way to wait for a handler to set a flag is
 *
 *     while (!got)
 *             pause();
 *
 * but the signal can arrive after the test of `got` and before pause()
 * starts.  The handler runs in that gap, sets the flag, and pause() then
 * sleeps until the NEXT signal, which may never come: a lost wake-up.  The
 * gap is tiny, so the bug shows up rarely, in production, under load.
 *
 * The fix closes the gap: block the signal, test the flag (no handler can
 * run now), then sigsuspend(&old), which unblocks the signal and sleeps in
 * ONE atomic step.  A signal that arrived while blocked is pending, and
 * sigsuspend returns at once after its handler has run.
 *
 * usage: waiter [count]     (default 1)
 *
 * For each of `count` rounds it prints "waiting for SIGUSR1 (#i)", waits
 * until the handler has run, then prints "woken by SIGUSR1 (#i), handler runs
 * so far: N".  It exits 0.
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

static volatile sig_atomic_t got;	/* set by the handler, cleared by main */
static volatile sig_atomic_t handled;	/* how often the handler ran */

static void on_usr1(int sig)
{
	(void)sig;
	got = 1;
	handled++;
}

int main(int argc, char *argv[])
{
	struct sigaction sa;
	int count = 1;

	if (argc > 2 || (argc == 2 && (count = atoi(argv[1])) < 1)) {
		fprintf(stderr, "usage: %s [count]\n", argv[0]);
		return EXIT_FAILURE;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) == -1)
		die("sigaction");

	/* TODO 5: block SIGUSR1 with sigprocmask(2) before the first test of `got`; keep the old mask. */

	for (int i = 1; i <= count; i++) {
		printf("waiting for SIGUSR1 (#%d)\n", i);
		if (fflush(stdout) == EOF)
			die("fflush");
		/* TODO 5: wait until `got` is set: test it, and sleep with sigsuspend(&old) while it is 0. */
		got = 0;
		printf("woken by SIGUSR1 (#%d), handler runs so far: %d\n", i, (int)handled);
		if (fflush(stdout) == EOF)
			die("fflush");
	}

	/* TODO 5: restore the old mask. */
	return EXIT_SUCCESS;
}
