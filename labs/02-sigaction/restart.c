/* restart.c - SA_RESTART and EINTR: a read loop that is correct either way.
 *
 * A handler can run while the program sleeps in a "slow" system call such as
 * read(2) on a pipe or a terminal.  When the handler returns, the kernel
 * either restarts the call (the handler was installed with SA_RESTART) or
 * makes it fail with errno == EINTR.  A loop that treats -1 as the end of
 * the input loses the rest of it; the right loop reads again on EINTR.  Not
 * every call is restarted even with SA_RESTART (signal(7) lists them: pause,
 * sigsuspend, poll, nanosleep... always fail with EINTR), so robust code
 * handles EINTR whatever the flags.
 *
 * usage: restart [--restart]
 *
 * It installs a SIGUSR1 handler (with SA_RESTART when --restart is given)
 * that writes "handled SIGUSR1" with write(2), prints "ready (pid N)", and
 * counts the bytes and lines on stdin until end of file.  After each read it
 * prints "read N bytes"; after a read that failed with EINTR, "read
 * interrupted (EINTR), reading again".  At the end:
 *
 *     bytes 11, lines 2, signals 2, interrupted reads 2
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

static volatile sig_atomic_t signals;

static void on_usr1(int sig)
{
	static const char msg[] = "handled SIGUSR1\n";
	int saved_errno = errno;

	(void)sig;
	signals++;
	(void)!write(STDOUT_FILENO, msg, sizeof(msg) - 1);
	errno = saved_errno;
}

int main(int argc, char *argv[])
{
	long bytes = 0, lines = 0, interrupted = 0;
	int restart = 0;
	char buf[4096];
	ssize_t n;

	if (argc == 2 && strcmp(argv[1], "--restart") == 0) {
		restart = 1;
	} else if (argc != 1) {
		fprintf(stderr, "usage: %s [--restart]\n", argv[0]);
		return EXIT_FAILURE;
	}

	/* TODO 2: install on_usr1 for SIGUSR1 with sigaction(2); sa_flags = SA_RESTART only if restart. */
	(void)on_usr1;	/* not installed yet */
	(void)restart;

	printf("ready (pid %ld)\n", (long)getpid());
	if (fflush(stdout) == EOF)
		die("fflush");

	for (;;) {
		n = read(STDIN_FILENO, buf, sizeof(buf));
		/* TODO 2: on EINTR: add 1 to `interrupted`, print "read interrupted (EINTR), reading again", read again. */
		if (n == -1)
			die("read");
		if (n == 0)
			break;
		bytes += n;
		for (ssize_t i = 0; i < n; i++)
			lines += buf[i] == '\n';
		printf("read %zd bytes\n", n);
		if (fflush(stdout) == EOF)
			die("fflush");
	}
	printf("bytes %ld, lines %ld, signals %d, interrupted reads %ld\n", bytes, lines, (int)signals, interrupted);
	if (fflush(stdout) == EOF)
		die("fflush");
	return EXIT_SUCCESS;
}
