/* private_first.c - sigwaitinfo() takes the thread's own signals first.
 *
 * Lab 6's sigwatch -T: a thread waits with sigwaitinfo(), and the file's
 * owner is that thread (F_SETOWN_EX, F_OWNER_TID), so each SIGRTMIN the
 * file sends is queued for the thread alone (private).  A SIGTERM sent
 * with kill() is for the process (shared).  The kernel's dequeue_signal()
 * looks in the thread's private queue first and in the process's only when
 * it is empty, whatever the numbers: SIGTERM (15) waits behind every
 * queued SIGRTMIN (34), and a burst that keeps the private queue filled
 * keeps it waiting.
 *
 * Every signal is blocked in both threads.  Main writes 5 records to a
 * pipe (5 SIGRTMIN for the waiter), then kill()s the process with SIGTERM,
 * and only then lets the waiter take what is pending; the waiter writes one
 * more record after each of its first 10 takes (a burst that goes on), and
 * prints the order in which it took the signals:
 *
 *   private_first          F_OWNER_TID: "SIGRTMIN x15, then SIGTERM"
 *   private_first --pid    F_SETOWN with the process ID (shared, like
 *                          SIGTERM): the lowest number first,
 *                          "SIGTERM, then SIGRTMIN x15"
 *
 * usage: private_first [--pid]
 */
#define _GNU_SOURCE			/* F_SETOWN_EX, F_SETSIG, gettid() */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIRST 5				/* queued before the SIGTERM */
#define MORE 10				/* written by the waiter as it takes */

static int p[2], by_pid;
static pthread_barrier_t owned, sent;

static void die(const char *what)
{
	perror(what);
	exit(EXIT_FAILURE);
}

static void *waiter(void *arg)
{
	struct f_owner_ex owner = { .type = F_OWNER_TID, .pid = gettid() };
	struct timespec zero = { 0, 0 };
	sigset_t *set = arg;
	char order[256] = "";
	int last = 0, run = 0, more = MORE, sig;

	if (by_pid)
		owner = (struct f_owner_ex) { .type = F_OWNER_PID, .pid = getpid() };
	if (fcntl(p[0], F_SETOWN_EX, &owner) == -1)
		die("fcntl F_SETOWN_EX");
	pthread_barrier_wait(&owned);
	pthread_barrier_wait(&sent);

	/* Take what is pending, one at a time, until nothing is. */
	while ((sig = sigtimedwait(set, NULL, &zero)) > 0) {
		if (sig == SIGRTMIN && more > 0) {
			more--;
			if (write(p[1], "x", 1) != 1)
				die("write");
		}
		if (sig != last && run > 0)
			snprintf(order + strlen(order), sizeof(order) - strlen(order), "%s%s x%d",
				 *order ? ", then " : "", last == SIGTERM ? "SIGTERM" : "SIGRTMIN", run);
		if (sig != last)
			run = 0;
		last = sig;
		run++;
	}
	if (errno != EAGAIN)
		die("sigtimedwait");
	snprintf(order + strlen(order), sizeof(order) - strlen(order), "%s%s x%d",
		 *order ? ", then " : "", last == SIGTERM ? "SIGTERM" : "SIGRTMIN", run);
	printf("taken: %s\n", order);
	return NULL;
}

int main(int argc, char *argv[])
{
	pthread_t t;
	sigset_t set;
	int err;

	if (argc > 2 || (argc == 2 && strcmp(argv[1], "--pid") != 0)) {
		fprintf(stderr, "usage: %s [--pid]\n", argv[0]);
		exit(EXIT_FAILURE);
	}
	by_pid = argc == 2;

	/* Blocked before the thread exists: it inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		die("sigprocmask");
	if (pipe(p) == -1)
		die("pipe");
	if (fcntl(p[0], F_SETSIG, SIGRTMIN) == -1 ||
	    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_ASYNC | O_NONBLOCK) == -1)
		die("fcntl");
	pthread_barrier_init(&owned, NULL, 2);
	pthread_barrier_init(&sent, NULL, 2);
	err = pthread_create(&t, NULL, waiter, &set);
	if (err != 0) {
		errno = err;
		die("pthread_create");
	}
	pthread_barrier_wait(&owned);

	for (int i = 0; i < FIRST; i++)
		if (write(p[1], "x", 1) != 1)
			die("write");
	if (kill(getpid(), SIGTERM) == -1)
		die("kill");
	printf("%s: %d SIGRTMIN queued for %s, then kill(SIGTERM) to the process; "
	       "%d more SIGRTMIN as the waiter takes\n", by_pid ? "F_OWNER_PID" : "F_OWNER_TID",
	       FIRST, by_pid ? "the process" : "the waiting thread", MORE);
	fflush(stdout);
	pthread_barrier_wait(&sent);
	pthread_join(t, NULL);
	return EXIT_SUCCESS;
}
