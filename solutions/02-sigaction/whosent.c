/* whosent.c - SA_SIGINFO: who sent a signal, and how.
 *
 * A handler installed with SA_SIGINFO gets a siginfo_t (sigaction(2)):
 *   si_signo  the signal;
 *   si_code   how it was sent: SI_USER (kill), SI_QUEUE (sigqueue, with a
 *             value in si_value), SI_TKILL (tgkill, which raise() uses),
 *             SI_KERNEL or a signal-specific code when the kernel sent it;
 *   si_pid, si_uid  the sender's process ID and real user ID (for kill,
 *             sigqueue and tgkill; 0 when the kernel sent it).
 *
 * usage: whosent
 *
 * It prints "my pid is P, my uid is U", then runs one experiment per line of
 * stdin and prints what the handler saw:
 *   kill    a child process sends SIGUSR1 with kill(2)
 *   queue   a child process sends SIGUSR1 with sigqueue(3), value 42
 *   raise   the program sends itself SIGUSR1 with raise(3)
 *   timer   the kernel sends SIGALRM when a 1 ms setitimer(2) timer expires
 * e.g. "SIGUSR1 from pid 7 uid 1000, si_code SI_QUEUE, value 42".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(EXIT_FAILURE);
}

/* What the handler saw, copied out of the siginfo_t for main to print. */
static volatile sig_atomic_t got, got_signo, got_code, got_value;
static volatile pid_t got_pid;
static volatile uid_t got_uid;

static void on_signal(int sig, siginfo_t *si, void *ucontext)
{
	/* TODO 3: copy si_signo, si_code, si_pid, si_uid and si_value.sival_int into the got_* variables, then set got = 1. */
	(void)sig;
	(void)ucontext;
	got_signo = si->si_signo;
	got_code = si->si_code;
	got_pid = si->si_pid;
	got_uid = si->si_uid;
	got_value = si->si_value.sival_int;
	got = 1;
	//> (void)sig;
	//> (void)si;
	//> (void)ucontext;
	/* END TODO */
}

static const char *code_name(int code)
{
	/* TODO 3: return "SI_USER", "SI_QUEUE", "SI_TKILL" or "SI_KERNEL" for those codes, "other" for the rest. */
	switch (code) {
	case SI_USER:
		return "SI_USER";
	case SI_QUEUE:
		return "SI_QUEUE";
	case SI_TKILL:
		return "SI_TKILL";
	case SI_KERNEL:
		return "SI_KERNEL";
	default:
		return "other";
	}
	//> (void)code;
	//> return "?";
	/* END TODO */
}

static sigset_t waitmask;	/* our mask without SIGUSR1 and SIGALRM */

/* Wait until the handler has run (race-free: see sigsuspend in Task 5). */
static void wait_for_handler(void)
{
	while (!got)
		if (sigsuspend(&waitmask) == -1 && errno != EINTR)
			die("sigsuspend");
}

static void report(void)
{
	printf("%s from pid %ld uid %ld, si_code %s", got_signo == SIGUSR1 ? "SIGUSR1" :
	       got_signo == SIGALRM ? "SIGALRM" : "another signal", (long)got_pid, (long)got_uid,
	       code_name(got_code));
	if (got_code == SI_QUEUE)
		printf(", value %d", (int)got_value);
	printf("\n");
	if (fflush(stdout) == EOF)
		die("fflush");
	got = 0;
}

/* A child process sends us SIGUSR1, with kill() or with sigqueue(). */
static void from_child(int queue)
{
	pid_t pid, parent = getpid();

	if (fflush(stdout) == EOF)
		die("fflush");
	pid = fork();
	if (pid == -1)
		die("fork");
	if (pid == 0) {
		union sigval v = { .sival_int = 42 };

		if (queue ? sigqueue(parent, SIGUSR1, v) : kill(parent, SIGUSR1))
			_exit(EXIT_FAILURE);
		_exit(EXIT_SUCCESS);
	}
	printf("sender: child pid %ld\n", (long)pid);
	if (waitpid(pid, NULL, 0) == -1)
		die("waitpid");
	wait_for_handler();
	report();
}

int main(int argc, char *argv[])
{
	struct itimerval once = { .it_value = { .tv_sec = 0, .tv_usec = 1000 } };
	sigset_t both;
	char line[64];

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: whosent   (commands on stdin: kill, queue, raise, timer)\n");
		return EXIT_FAILURE;
	}

	/* TODO 3: install on_signal for SIGUSR1 and SIGALRM with sigaction(2): sa_sigaction and SA_SIGINFO. */
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) == -1 || sigaction(SIGALRM, &sa, NULL) == -1)
		die("sigaction");
	//> (void)on_signal;	/* not installed yet */
	/* END TODO */

	/* The signals stay blocked except while we wait for them. */
	sigemptyset(&both);
	sigaddset(&both, SIGUSR1);
	sigaddset(&both, SIGALRM);
	if (sigprocmask(SIG_BLOCK, &both, &waitmask) == -1)
		die("sigprocmask");
	sigdelset(&waitmask, SIGUSR1);
	sigdelset(&waitmask, SIGALRM);

	printf("my pid is %ld, my uid is %ld\n", (long)getpid(), (long)getuid());
	if (fflush(stdout) == EOF)
		die("fflush");
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\n")] = '\0';
		if (strcmp(line, "kill") == 0 || strcmp(line, "queue") == 0) {
			from_child(line[0] == 'q');
		} else if (strcmp(line, "raise") == 0) {
			if (raise(SIGUSR1) != 0)
				die("raise");
			wait_for_handler();
			report();
		} else if (strcmp(line, "timer") == 0) {
			if (setitimer(ITIMER_REAL, &once, NULL) == -1)
				die("setitimer");
			wait_for_handler();
			report();
		} else if (line[0] != '\0') {
			printf("unknown command: %s (kill, queue, raise or timer)\n", line);
			if (fflush(stdout) == EOF)
				die("fflush");
		}
	}
	if (ferror(stdin))
		die("read stdin");
	return EXIT_SUCCESS;
}
