/*
 * errno.c - a handler that changes errno, and one that puts it back
 *
 * Usage: errno MODE
 *   clobber  the SIGUSR1 handler (on_usr1) calls close(-1), which sets errno
 *            to EBADF, and returns: main's errno has changed under it
 *   restore  the same handler saves errno on entry and restores it
 * Prints "errno in main: N" after the signal (0 for restore).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int restore;

static void on_usr1(int sig)
{
	int saved = errno;

	(void)sig;
	(void)close(-1);	/* EBADF: async-signal-safe, but it sets errno */
	if (restore)
		errno = saved;
}

int main(int argc, char *argv[])
{
	struct sigaction sa;

	if (argc != 2 || (strcmp(argv[1], "clobber") && strcmp(argv[1], "restore"))) {
		fprintf(stderr, "usage: errno clobber|restore\n");
		return 2;
	}
	restore = !strcmp(argv[1], "restore");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) == -1) {
		perror("sigaction");
		return 1;
	}
	errno = 0;
	raise(SIGUSR1);
	printf("errno in main: %d\n", errno);
	return 0;
}
