/* reaper.c - a SIGCHLD handler that is safe to run at any moment.
 *
 * When a child process ends, the kernel sends its parent SIGCHLD.  A handler
 * that collects ("reaps") the finished children with waitpid(2) keeps zombies
 * from piling up.  Because a handler can interrupt the main program between
 * any two instructions, it must:
 *   - call only async-signal-safe functions (signal-safety(7)): write(2)
 *     and waitpid(2) are, printf(3) and malloc(3) are not;
 *   - reap in a loop: several children that end while SIGCHLD is blocked
 *     produce a single SIGCHLD (standard signals do not queue);
 *   - save errno on entry and restore it on return: waitpid() sets errno
 *     (ECHILD when no child is left), and the interrupted code may be just
 *     about to look at its own errno.
 *
 * usage: reaper [children]      (default 1, at most 20)
 *
 * The program forks the children with SIGCHLD blocked, waits until all of
 * them have ended (without reaping them), sets errno to EBADF with a failing
 * close(-1), then unblocks SIGCHLD: the handler runs at that moment.  Main
 * then reports whether errno survived and how many children the handler
 * reaped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(EXIT_FAILURE);
}

static volatile sig_atomic_t reaped;	/* children reaped by the handler */

/* A line built in a local buffer and written with one write(2): only
 * async-signal-safe operations, so the handler may use it. */
struct line {
	char buf[160];
	size_t len;
};

static inline void line_add(struct line *l, const char *s)
{
	while (*s && l->len < sizeof(l->buf))
		l->buf[l->len++] = *s++;
}

static inline void line_add_num(struct line *l, long v)
{
	char digits[24];
	int n = 0;
	unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;

	do {
		digits[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		line_add(l, "-");
	while (n > 0 && l->len < sizeof(l->buf))
		l->buf[l->len++] = digits[--n];
}

static inline void line_write(const struct line *l)
{
	/* Nothing useful to do on failure inside a handler. */
	(void)!write(STDOUT_FILENO, l->buf, l->len);
}

static void on_chld(int sig)
{
	/* For each child reaped: add 1 to `reaped` and write the line
	 * "reaped child PID (exit status S)" with the line_* helpers.
	 * See waitpid(2) and signal-safety(7). */
	/* TODO 2: save errno; reap in a loop with waitpid(-1, &status, WNOHANG); restore errno. */
	int saved_errno = errno;
	int status;
	pid_t pid;

	(void)sig;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct line l = { .len = 0 };

		reaped++;
		line_add(&l, "reaped child ");
		line_add_num(&l, pid);
		if (WIFEXITED(status)) {
			line_add(&l, " (exit status ");
			line_add_num(&l, WEXITSTATUS(status));
		} else {
			line_add(&l, " (killed by signal ");
			line_add_num(&l, WTERMSIG(status));
		}
		line_add(&l, ")\n");
		line_write(&l);
	}
	errno = saved_errno;
	//> (void)sig;
	/* END TODO */
}

int main(int argc, char *argv[])
{
	sigset_t chld, old;
	pid_t kids[20];
	int n = 1, left = 0, err;
	siginfo_t si;

	if (argc > 2 || (argc == 2 && (n = atoi(argv[1])) < 1) || n > 20) {
		fprintf(stderr, "usage: %s [children]   (1 to 20)\n", argv[0]);
		return EXIT_FAILURE;
	}

	/* TODO 2: install on_chld for SIGCHLD with signal(2). */
	if (signal(SIGCHLD, on_chld) == SIG_ERR)
		die("signal(SIGCHLD)");
	//> (void)on_chld;	/* not installed yet */
	/* END TODO */

	/* Hold SIGCHLD back until we choose to let it in (lab 2 explains
	 * sigprocmask(2); here it makes the moment the handler runs exact). */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &chld, &old) == -1)
		die("sigprocmask");

	for (int i = 0; i < n; i++) {
		kids[i] = fork();
		if (kids[i] == -1)
			die("fork");
		if (kids[i] == 0)
			_exit(10 + i);
		printf("forked child %ld\n", (long)kids[i]);
	}
	/* Wait until every child has ended, but leave it to the handler to
	 * reap them: WNOWAIT keeps each one a zombie. */
	for (int i = 0; i < n; i++)
		if (waitid(P_PID, (id_t)kids[i], &si, WEXITED | WNOWAIT) == -1)
			die("waitid");
	printf("all %d children have ended; unblocking SIGCHLD\n", n);
	if (fflush(stdout) == EOF)
		die("fflush");

	/* Main's own errno, set by a call that fails on purpose... */
	if (close(-1) != -1 || errno != EBADF)
		die("close(-1) was expected to fail with EBADF");
	/* ...and the handler runs inside this call. */
	if (sigprocmask(SIG_SETMASK, &old, NULL) == -1)
		die("sigprocmask");
	err = errno;

	printf("errno after the handler: %s (%s)\n", strerrorname_np(err) ? strerrorname_np(err) : "?",
	       err == EBADF ? "preserved" : "changed by the handler: save and restore it");
	printf("children reaped by the handler: %d of %d\n", (int)reaped, n);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		left++;
	if (left)
		printf("children main had to reap itself: %d\n", left);
	if (fflush(stdout) == EOF)
		die("fflush");
	return EXIT_SUCCESS;
}
