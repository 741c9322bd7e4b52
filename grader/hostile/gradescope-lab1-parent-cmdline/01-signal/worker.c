/* worker.c - hostile (issue 20, route 1), for the Gradescope archive's fallback (no namespaces):
 * looks for the grader's files in the command lines and environments of its ancestors (the keeper's
 * path, run_autograder's --root), then prints what it can read of the solutions there: the reference
 * driver (lab 3's solution, grader/reference/), the archive's tarball that carries it, and a
 * reference module built from it in the grader's module cache. Exits 1, so the failing test's
 * feedback shows its output.
 * Expected: no point, no "LEAK" line and no line of the reference driver in results.json. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define REF "/reference/03-fasync-button/button_driver.c"
#define KEEPER "/gradelib/keeper.py"

static void try_grader(const char *grader)
{
	char path[4096], line[512];
	FILE *f;
	DIR *d;
	struct dirent *e;
	int fd;

	snprintf(path, sizeof(path), "%s%s", grader, REF);
	f = fopen(path, "r");
	if (f != NULL) {
		printf("LEAK %s is readable; its fasync lines:\n", path);
		while (fgets(line, sizeof(line), f) != NULL)
			if (strstr(line, "fasync") != NULL)
				fputs(line, stdout);
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s/../../workbook.tar.gz", grader);
	fd = open(path, O_RDONLY);
	if (fd >= 0) {
		printf("LEAK %s is readable (it carries grader/reference/)\n", path);
		close(fd);
	}
	snprintf(path, sizeof(path), "%s/../vm/cache/build/modules", grader);
	d = opendir(path);
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		char ko[4096 + 300];

		snprintf(ko, sizeof(ko), "%s/%s/button_driver_ref.ko", path, e->d_name);
		fd = open(ko, O_RDONLY);
		if (fd >= 0) {
			printf("LEAK %s is readable (the reference driver, built)\n", ko);
			close(fd);
		}
	}
	closedir(d);
}

/* The NUL-separated strings of /proc/PID/NAME, checked one by one. */
static void scan(pid_t pid, const char *name)
{
	char path[64], buf[65536], grader[4096];
	ssize_t n;
	int fd;
	char *s, *prev = NULL;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (s = buf; s < buf + n; s += strlen(s) + 1) {
		size_t len = strlen(s);

		if (strstr(s, "/reference/") != NULL || strstr(s, "/solutions") != NULL)
			printf("LEAK the %s of process %d names a solution: %s\n", name, (int)pid, s);
		if (len > strlen(KEEPER) && len < sizeof(grader) && strcmp(s + len - strlen(KEEPER), KEEPER) == 0) {
			snprintf(grader, sizeof(grader), "%.*s", (int)(len - strlen(KEEPER)), s);
			try_grader(grader);
		}
		if (prev != NULL && strcmp(prev, "--root") == 0) {
			snprintf(grader, sizeof(grader), "%.4000s/source/workbook/grader", s);
			try_grader(grader);
		}
		prev = s;
	}
}

static pid_t parent_of(pid_t pid)
{
	char path[64], buf[1024], *p;
	int ppid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL)
		sscanf(p + 2, "%*c %d", &ppid);
	fclose(f);
	return ppid;
}

int main(void)
{
	pid_t pid;
	int depth;

	try_grader("/autograder/source/workbook/grader");
	for (pid = getppid(), depth = 0; pid > 1 && depth < 16; pid = parent_of(pid), depth++) {
		scan(pid, "cmdline");
		scan(pid, "environ");
	}
	fflush(stdout);
	return 1;
}
