/* oneshot.c - the portability trap of signal(): a handler that works once.
 *
 * The grader builds this program with -std=c11 (strict ISO C).  In that mode
 * glibc's signal() has the old System V meaning: when the signal is
 * delivered, the disposition is reset to SIG_DFL before the handler runs
 * (SA_RESETHAND), the signal is not blocked during its own handler
 * (SA_NODEFER), and interrupted system calls are not restarted.  So the
 * FIRST SIGUSR1 runs the handler and the SECOND one kills the process.
 * Because this file defines _POSIX_C_SOURCE, _DEFAULT_SOURCE is off even
 * with the GNU dialects (gcc 12's default, -std=gnu17, or -std=gnu11), so
 * the same happens there; only -D_DEFAULT_SOURCE gives the BSD meaning
 * back.  Code whose behaviour depends on a compiler flag or
 * a #define is a trap: install the handler with sigaction(2), whose meaning
 * is fixed by POSIX.
 *
 * usage: oneshot
 *
 * It prints "ready (pid N)", reports each SIGUSR1 from the handler with
 * write(2) ("caught SIGUSR1 #N"), counts the lines on stdin until end of
 * file, then prints "lines: L, SIGUSR1 caught: C" and exits 0.
 */
/* Declares sigaction() and kill() without _DEFAULT_SOURCE, so signal()
 * keeps its System V meaning. */
#define _POSIX_C_SOURCE 200809L
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

static volatile sig_atomic_t caught;

static void on_usr1(int sig)
{
	int saved_errno = errno;
	char msg[] = "caught SIGUSR1 #0\n";

	(void)sig;
	caught++;
	msg[sizeof(msg) - 3] = (char)('0' + caught % 10);
	(void)!write(STDOUT_FILENO, msg, sizeof(msg) - 1);
	errno = saved_errno;
}

int main(int argc, char *argv[])
{
	long lines = 0;
	char buf[512];
	ssize_t n;

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: oneshot\n");
		return EXIT_FAILURE;
	}

	/* Compiled with -std=c11, the signal() call below works only once. */
	/* TODO 4: install on_usr1 with sigaction(2): sa_handler, empty sa_mask, SA_RESTART. */
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGUSR1, &sa, NULL) == -1)
		die("sigaction(SIGUSR1)");
	//> if (signal(SIGUSR1, on_usr1) == SIG_ERR)
	//> 	die("signal(SIGUSR1)");
	/* END TODO */

	printf("ready (pid %ld)\n", (long)getpid());
	if (fflush(stdout) == EOF)
		die("fflush");

	for (;;) {
		n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;	/* a handler interrupted the read: read again */
		if (n == -1)
			die("read");
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			lines += buf[i] == '\n';
	}
	printf("lines: %ld, SIGUSR1 caught: %d\n", lines, (int)caught);
	if (fflush(stdout) == EOF)
		die("fflush");
	return EXIT_SUCCESS;
}
