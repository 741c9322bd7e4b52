/* rt_kill_limit.c - a realtime signal over RLIMIT_SIGPENDING: sigqueue()
 * is refused, kill() is not.
 *
 * With RLIMIT_SIGPENDING set to 3 and SIGRTMIN+1 and SIGRTMIN blocked, the
 * program fills the queue with three sigqueue(SIGRTMIN+1), then sends
 * SIGRTMIN to itself once with sigqueue() and twice with kill(), and takes
 * what is pending with sigtimedwait():
 *
 *   sigqueue(SIGRTMIN) over the limit: -1 EAGAIN (refused)
 *   kill(SIGRTMIN) twice over the limit: 0 and 0 (sent, no queue entry)
 *   taken: SIGRTMIN once, si_code SI_USER, si_pid 0 (no siginfo kept: the
 *          two kill()s merged into the pending bit), then SIGRTMIN+1
 *          three times with si_code SI_QUEUE and our pid
 *
 * (Linux's __send_signal(): past the limit, a realtime signal whose
 * si_code is not SI_USER fails with EAGAIN; kill()'s SI_USER sets the
 * pending bit without an entry.  F_SETSIG's POLL_* codes are refused in
 * the same way as sigqueue(), and the kernel sends SIGIO instead.)
 *
 * The limit counts every signal queued for the real user: run it with
 * `unshare --user --map-root-user` to start from a count of 0.
 *
 * usage: rt_kill_limit
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define LIMIT 3

static void die(const char *what)
{
	perror(what);
	exit(EXIT_FAILURE);
}

static const char *code(int c)
{
	return c == SI_USER ? "SI_USER" : c == SI_QUEUE ? "SI_QUEUE" : "other";
}

int main(void)
{
	struct timespec zero = { 0, 0 };
	struct rlimit rl;
	union sigval v = { .sival_int = 0 };
	siginfo_t si;
	sigset_t set;
	int rc, rc2, sig;

	if (getrlimit(RLIMIT_SIGPENDING, &rl) == -1)
		die("getrlimit");
	rl.rlim_cur = LIMIT;
	if (setrlimit(RLIMIT_SIGPENDING, &rl) == -1)
		die("setrlimit");
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN);
	sigaddset(&set, SIGRTMIN + 1);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		die("sigprocmask");

	for (int i = 0; i < LIMIT; i++)
		if (sigqueue(getpid(), SIGRTMIN + 1, v) == -1)
			die("sigqueue SIGRTMIN+1");
	printf("RLIMIT_SIGPENDING %d, %d x SIGRTMIN+1 queued\n", LIMIT, LIMIT);
	rc = sigqueue(getpid(), SIGRTMIN, v);
	printf("sigqueue(SIGRTMIN) over the limit: %d %s\n", rc,
	       rc == -1 ? (errno == EAGAIN ? "EAGAIN" : strerror(errno)) : "(queued)");
	rc = kill(getpid(), SIGRTMIN);
	rc2 = kill(getpid(), SIGRTMIN);
	printf("kill(SIGRTMIN) twice over the limit: %d and %d\n", rc, rc2);

	while ((sig = sigtimedwait(&set, &si, &zero)) > 0)
		printf("taken: %s si_code %s si_pid %ld\n",
		       sig == SIGRTMIN ? "SIGRTMIN" : "SIGRTMIN+1", code(si.si_code),
		       (long)si.si_pid);
	if (errno != EAGAIN)
		die("sigtimedwait");
	printf("(our pid %ld)\n", (long)getpid());
	return EXIT_SUCCESS;
}
