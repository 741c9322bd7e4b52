/*
 * nested.c - handlers that interrupt handlers, for the sigsafe tests
 *
 * Usage: nested MODE
 *   two      on_usr1 (SIGUSR1) raises SIGUSR2, whose handler on_usr2 calls
 *            printf(); back in on_usr1, it calls malloc().  The report must
 *            name SIGUSR2/on_usr2 for printf and SIGUSR1/on_usr1 for malloc.
 *   nodefer  on_again (SIGUSR1, SA_NODEFER) raises SIGUSR1 once more from
 *            inside itself; the inner run calls strerror(), the outer one
 *            calls free() after the inner one returned.
 * Both modes then call printf() and malloc() in main (not to be reported)
 * and print "nested ok".
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *volatile keep;
static volatile sig_atomic_t level;

static void die(const char *msg)
{
	perror(msg);
	exit(EXIT_FAILURE);
}

static void on_usr2(int sig)
{
	printf("on_usr2: signal %d\n", sig);
}

static void on_usr1(int sig)
{
	raise(SIGUSR2);		/* runs on_usr2 before raise returns */
	keep = malloc(16);
	(void)sig;
}

static void on_again(int sig)
{
	level++;
	if (level == 1) {
		raise(sig);	/* SA_NODEFER: delivered right here */
		free(keep);
		keep = NULL;
	} else {
		keep = strerror(1) ? malloc(8) : NULL;
	}
}

static void install(int sig, void (*fn)(int), int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = flags;
	if (sigaction(sig, &sa, NULL) == -1)
		die("sigaction");
}

int main(int argc, char *argv[])
{
	if (argc != 2) {
		fprintf(stderr, "Usage: %s two|nodefer\n", argv[0]);
		return 2;
	}
	if (strcmp(argv[1], "two") == 0) {
		install(SIGUSR1, on_usr1, 0);
		install(SIGUSR2, on_usr2, 0);
		raise(SIGUSR1);
	} else if (strcmp(argv[1], "nodefer") == 0) {
		install(SIGUSR1, on_again, SA_NODEFER);
		raise(SIGUSR1);
		if (level != 2)
			fprintf(stderr, "the handler ran %d times, not twice\n", (int)level);
	} else {
		fprintf(stderr, "unknown mode %s\n", argv[1]);
		return 2;
	}
	free(keep);
	keep = malloc(32);
	printf("nested ok\n");
	free(keep);
	return 0;
}
