/* jobs.c - record a child before its SIGCHLD can arrive.
 *
 * A program that runs jobs as child processes keeps a table of them (which
 * pid is which job) and learns from SIGCHLD that one has ended: the handler
 * reaps the child with waitpid(2) and marks its job done in the table.
 *
 * The trap is the order of events.  fork(2) creates the child first and
 * returns to the parent afterwards; a short job can have finished, and its
 * SIGCHLD been handled, before the parent has written the new pid into the
 * table.  The handler then reaps a pid it does not know, and the job it
 * belongs to is never marked done: a shell would show it as running for
 * ever.  The window is a few instructions wide, so the bug hides in tests.
 *
 * The fix: block SIGCHLD before fork(), record the child, then restore the
 * mask.  A SIGCHLD that comes in between stays pending and is delivered when
 * the mask is restored, after the job is in the table.  The child inherits
 * the blocked mask (and would keep it across exec): it restores the mask
 * first.
 *
 * usage: jobs COUNT       (1 to 20)
 *
 * Job i (1..COUNT) is a child that exits at once with status i.  When all
 * children have been reaped, main prints one line per job,
 *     job 2 (pid 51): done, exit status 2
 *     job 3 (pid 52): LOST, never marked done
 * then "reaped: R, unknown: U" (U: children the handler could not match to
 * a job), and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_JOBS 20

static void die(const char *what)
{
	perror(what);
	exit(EXIT_FAILURE);
}

/* The job table, shared by main (which fills in pid) and the handler (which
 * marks jobs done).  pid_t is an int on Linux, written in one store. */
static struct job {
	volatile pid_t pid;		/* 0 until main has recorded the child */
	volatile sig_atomic_t done;	/* the handler reaped it */
	volatile sig_atomic_t status;	/* its exit status */
} jobs[MAX_JOBS + 1];
static int njobs;

static volatile sig_atomic_t reaped;	/* children reaped by the handler */
static volatile sig_atomic_t unknown;	/* ... that matched no job */

/* Called by the handler for every child it reaps. */
static void record_exit(pid_t pid, int status)
{
	/* TODO 6: find the job with this pid, mark it done with its exit status; count it in `unknown` if none matches. */
	for (int i = 1; i <= njobs; i++) {
		if (jobs[i].pid == pid) {
			jobs[i].status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
			jobs[i].done = 1;
			return;
		}
	}
	unknown++;
	//> (void)pid;
	//> (void)status;
	//> unknown++;
	/* END TODO */
}

static void on_chld(int sig)
{
	int saved_errno = errno, status;
	pid_t pid;

	(void)sig;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		reaped++;
		record_exit(pid, status);
	}
	errno = saved_errno;
}

int main(int argc, char *argv[])
{
	struct sigaction sa;
	sigset_t chld, old;

	if (argc != 2 || (njobs = atoi(argv[1])) < 1 || njobs > MAX_JOBS) {
		fprintf(stderr, "usage: %s COUNT      (1 to %d)\n", argv[0], MAX_JOBS);
		return EXIT_FAILURE;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_chld;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGCHLD, &sa, NULL) == -1)
		die("sigaction");
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (fflush(stdout) == EOF)	/* the children must not flush our buffer */
		die("fflush");

	for (int i = 1; i <= njobs; i++) {
		/* TODO 6: block SIGCHLD (keep the old mask in `old`) so that no handler can run before the job is recorded. */
		if (sigprocmask(SIG_BLOCK, &chld, &old) == -1)
			die("sigprocmask");
		/* END TODO */
		pid_t pid = fork();

		if (pid == -1)
			die("fork");
		if (pid == 0) {
			/* TODO 6: in the child, restore the old mask. */
			sigprocmask(SIG_SETMASK, &old, NULL);
			/* END TODO */
			_exit(i);	/* the job: end at once, status i */
		}
		jobs[i].pid = pid;
		/* TODO 6: restore the old mask: a SIGCHLD that came meanwhile is handled now. */
		if (sigprocmask(SIG_SETMASK, &old, NULL) == -1)
			die("sigprocmask");
		/* END TODO */
	}

	/* Wait until every child has been reaped (lab 2, section 5). */
	if (sigprocmask(SIG_BLOCK, &chld, &old) == -1)
		die("sigprocmask");
	while (reaped < njobs)
		sigsuspend(&old);
	if (sigprocmask(SIG_SETMASK, &old, NULL) == -1)
		die("sigprocmask");

	for (int i = 1; i <= njobs; i++) {
		if (jobs[i].done)
			printf("job %d (pid %ld): done, exit status %d\n", i, (long)jobs[i].pid, (int)jobs[i].status);
		else
			printf("job %d (pid %ld): LOST, never marked done\n", i, (long)jobs[i].pid);
	}
	printf("reaped: %d, unknown: %d\n", (int)reaped, (int)unknown);
	if (fflush(stdout) == EOF)
		die("fflush");
	return EXIT_SUCCESS;
}
