/* inherit.c - what a child process inherits: SIG_IGN, SIG_DFL and handlers
 * across fork(2) and execve(2).
 *
 *   fork:  the child is a copy, so it keeps every disposition: ignored
 *          signals stay ignored, caught signals stay caught (the handler's
 *          code is in the copy too).
 *   exec:  the new program replaces the old code, so a handler cannot
 *          survive: caught signals go back to SIG_DFL.  SIG_IGN is not code
 *          and does survive (that is how nohup(1) works).  A program that
 *          ignores a signal for itself should put it back to SIG_DFL in the
 *          child before exec, or the program it starts inherits the ignore.
 *
 * The dispositions are read from the kernel's view in /proc/self/status
 * (SigIgn: ignored, SigCgt: caught; see proc(5)), so what is printed is what
 * the kernel will do.
 *
 * usage: inherit                  the demonstration (below)
 *        inherit --report WHO     print the dispositions of this process, as WHO
 *
 * The demonstration prints four lines "WHO: SIGUSR1=... SIGUSR2=..." (parent,
 * child after fork, child after exec, child after reset and exec), then
 * "ready (pid N)".  It reads one line from stdin, prints how often SIGUSR2
 * was caught meanwhile, and exits 0.
 */
#define _GNU_SOURCE
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

static volatile sig_atomic_t usr2_count;

static void on_usr2(int sig)
{
	(void)sig;
	usr2_count++;
}

/* "ignored", "caught" or "default", as the kernel sees it. */
static const char *disposition(int sig)
{
	unsigned long long ign = 0, cgt = 0;
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");

	if (f == NULL)
		die("/proc/self/status");
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "SigIgn: %llx", &ign);
		sscanf(line, "SigCgt: %llx", &cgt);
	}
	fclose(f);
	if (ign & (1ULL << (sig - 1)))
		return "ignored";
	if (cgt & (1ULL << (sig - 1)))
		return "caught";
	return "default";
}

static void report(const char *who)
{
	const char *u1 = disposition(SIGUSR1), *u2 = disposition(SIGUSR2);

	printf("%s: SIGUSR1=%s SIGUSR2=%s\n", who, u1, u2);
	if (fflush(stdout) == EOF)
		die("fflush");
}

static void exec_report(const char *who)
{
	execl("/proc/self/exe", "inherit", "--report", who, (char *)NULL);
	die("execl /proc/self/exe");
}

/* Run `child` in a child process and wait for it to finish. */
static void in_child(void (*child)(void))
{
	int status;
	pid_t pid;

	if (fflush(stdout) == EOF)	/* or the child prints our buffer again */
		die("fflush");
	pid = fork();
	if (pid == -1)
		die("fork");
	if (pid == 0) {
		child();
		_exit(EXIT_SUCCESS);
	}
	if (waitpid(pid, &status, 0) == -1)
		die("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "inherit: a child failed\n");
		exit(EXIT_FAILURE);
	}
}

static void child_reports(void)
{
	report("child after fork");
}

static void child_execs(void)
{
	exec_report("child after exec");
}

static void child_resets_then_execs(void)
{
	/* TODO 3: set SIGUSR1 back to SIG_DFL, so the new program does not inherit the ignore. */
	if (signal(SIGUSR1, SIG_DFL) == SIG_ERR)
		die("signal(SIGUSR1, SIG_DFL)");
	/* END TODO */
	exec_report("child after reset and exec");
}

int main(int argc, char *argv[])
{
	char line[64];

	if (argc == 3 && strcmp(argv[1], "--report") == 0) {
		report(argv[2]);
		return EXIT_SUCCESS;
	}
	if (argc != 1) {
		fprintf(stderr, "usage: %s\n       %s --report WHO\n", argv[0], argv[0]);
		return EXIT_FAILURE;
	}

	/* TODO 3: with signal(2), ignore SIGUSR1 (SIG_IGN) and catch SIGUSR2 with on_usr2. */
	if (signal(SIGUSR1, SIG_IGN) == SIG_ERR)
		die("signal(SIGUSR1, SIG_IGN)");
	if (signal(SIGUSR2, on_usr2) == SIG_ERR)
		die("signal(SIGUSR2)");
	//> (void)on_usr2;	/* not installed yet */
	/* END TODO */

	report("parent");
	in_child(child_reports);
	in_child(child_execs);
	in_child(child_resets_then_execs);

	printf("ready (pid %ld)\n", (long)getpid());
	if (fflush(stdout) == EOF)
		die("fflush");
	if (fgets(line, sizeof(line), stdin) == NULL && ferror(stdin))
		die("read stdin");
	printf("SIGUSR2 caught %d time(s); SIGUSR1 was %s\n", (int)usr2_count, disposition(SIGUSR1));
	if (fflush(stdout) == EOF)
		die("fflush");
	return EXIT_SUCCESS;
}
