/* burst.c - a first look at signal loss: standard signals do not queue.
 *
 * For each standard signal (1 to 31) the kernel keeps one "pending" bit, not
 * a counter: a SIGUSR1 that arrives while another SIGUSR1 is already pending
 * is merged into it.  Realtime signals (SIGRTMIN to SIGRTMAX) are queued, one
 * entry per signal sent.
 *
 * The program blocks SIGUSR1 and SIGRTMIN (blocked signals stay pending
 * instead of being delivered), prints "ready (pid N)", and waits for a line
 * on stdin.  Meanwhile someone sends it a burst:
 *
 *     for i in 1 2 3 4 5 6 7 8 9 10; do kill -USR1 $PID; kill -RTMIN $PID; done
 *
 * Then it unblocks both signals, every pending one is delivered, and it
 * prints how many times each handler ran:
 *
 *     SIGUSR1 delivered 1 time(s)
 *     SIGRTMIN delivered 10 time(s)
 *
 * usage: burst
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(EXIT_FAILURE);
}

static volatile sig_atomic_t usr1_count, rtmin_count;

/* TODO 5: write the handlers: on_usr1 adds 1 to usr1_count, on_rtmin to rtmin_count. */
static void on_usr1(int sig)
{
	(void)sig;
}

static void on_rtmin(int sig)
{
	(void)sig;
}

int main(int argc, char *argv[])
{
	sigset_t both, old;
	char line[64];

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: burst\n");
		return EXIT_FAILURE;
	}

	/* SIGRTMIN is a function call in glibc, not a constant: fine as an argument. */
	/* TODO 5: install on_usr1 for SIGUSR1 and on_rtmin for SIGRTMIN with signal(2). */
	(void)on_usr1;	/* not installed yet */
	(void)on_rtmin;

	sigemptyset(&both);
	sigaddset(&both, SIGUSR1);
	sigaddset(&both, SIGRTMIN);
	if (sigprocmask(SIG_BLOCK, &both, &old) == -1)
		die("sigprocmask");

	printf("ready (pid %ld)\n", (long)getpid());
	if (fflush(stdout) == EOF)
		die("fflush");
	if (fgets(line, sizeof(line), stdin) == NULL && ferror(stdin))
		die("read stdin");

	/* Every pending signal is delivered before sigprocmask() returns. */
	if (sigprocmask(SIG_SETMASK, &old, NULL) == -1)
		die("sigprocmask");
	printf("SIGUSR1 delivered %d time(s)\n", (int)usr1_count);
	printf("SIGRTMIN delivered %d time(s)\n", (int)rtmin_count);
	if (fflush(stdout) == EOF)
		die("fflush");
	return EXIT_SUCCESS;
}
