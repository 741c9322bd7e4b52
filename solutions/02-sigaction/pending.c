/* pending.c - sigprocmask() and sigpending(): hold signals back, look at them.
 *
 * Blocking a signal does not refuse it: a blocked signal that arrives stays
 * pending until it is unblocked, and is then delivered (once, for a standard
 * signal, however often it was sent).  sigprocmask(2) changes the set of
 * blocked signals (the mask) and gives back the old one, so a program can
 * block around a critical region and restore the mask exactly afterwards;
 * sigpending(2) tells which blocked signals are waiting.
 *
 * usage: pending
 *
 * The program catches SIGHUP, SIGINT, SIGUSR1, SIGUSR2 and SIGTERM (the
 * handler counts), blocks them, prints "ready (pid N)" and obeys lines on
 * stdin:
 *   pending   print "pending: SIGHUP SIGUSR2" (or "pending: none")
 *   unblock   restore the old mask; every pending signal is delivered; print
 *             "delivered: SIGHUP=1 SIGINT=0 SIGUSR1=0 SIGUSR2=1 SIGTERM=0"
 *   block     block the five signals again; print "blocked"
 * At end of file it exits 0.
 */
#define _GNU_SOURCE
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

static const int sigs[] = { SIGHUP, SIGINT, SIGUSR1, SIGUSR2, SIGTERM };
static const char *const names[] = { "SIGHUP", "SIGINT", "SIGUSR1", "SIGUSR2", "SIGTERM" };
#define NSIGS ((int)(sizeof(sigs) / sizeof(sigs[0])))

static volatile sig_atomic_t count[NSIGS];

static void on_signal(int sig)
{
	for (int i = 0; i < NSIGS; i++)
		if (sigs[i] == sig)
			count[i]++;
}

static void flush(void)
{
	if (fflush(stdout) == EOF)
		die("fflush");
}

static sigset_t set, old;	/* the five signals; the mask before we blocked them */

static void block(void)
{
	/* TODO 4: block the signals in `set` with sigprocmask(2), saving the previous mask in `old`. */
	if (sigprocmask(SIG_BLOCK, &set, &old) == -1)
		die("sigprocmask");
	/* END TODO */
}

static void unblock(void)
{
	/* TODO 4: restore the mask saved in `old` (SIG_SETMASK): pending signals are delivered now. */
	if (sigprocmask(SIG_SETMASK, &old, NULL) == -1)
		die("sigprocmask");
	//> (void)old;
	/* END TODO */
}

static void print_pending(void)
{
	int none = 1;

	printf("pending:");
	/* TODO 4: get the pending set with sigpending(2); print " NAME" for each of sigs[] in it (sigismember). */
	sigset_t p;

	if (sigpending(&p) == -1)
		die("sigpending");
	for (int i = 0; i < NSIGS; i++) {
		if (sigismember(&p, sigs[i]) == 1) {
			printf(" %s", names[i]);
			none = 0;
		}
	}
	/* END TODO */
	printf("%s\n", none ? " none" : "");
	flush();
}

int main(int argc, char *argv[])
{
	struct sigaction sa;
	char line[64];

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: pending   (commands on stdin: pending, unblock, block)\n");
		return EXIT_FAILURE;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigemptyset(&set);
	for (int i = 0; i < NSIGS; i++) {
		if (sigaction(sigs[i], &sa, NULL) == -1)
			die("sigaction");
		sigaddset(&set, sigs[i]);
	}

	block();
	printf("ready (pid %ld)\n", (long)getpid());
	flush();
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\n")] = '\0';
		if (strcmp(line, "pending") == 0) {
			print_pending();
		} else if (strcmp(line, "unblock") == 0) {
			unblock();
			printf("delivered:");
			for (int i = 0; i < NSIGS; i++)
				printf(" %s=%d", names[i], (int)count[i]);
			printf("\n");
			flush();
		} else if (strcmp(line, "block") == 0) {
			block();
			printf("blocked\n");
			flush();
		} else if (line[0] != '\0') {
			printf("unknown command: %s (pending, unblock or block)\n", line);
			flush();
		}
	}
	if (ferror(stdin))
		die("read stdin");
	return EXIT_SUCCESS;
}
