/* peek.c - hostile: tries to read what a student must never see: the project's solutions
 * (@REPO@/solutions), another student's submission in the class folder (@CLASSMATE@), the grader's
 * reports (@REPO@/grader/out), root's files. Prints "LEAK path: first line" for each it can read.
 * Expected: no points and no LEAK line: the sandbox shows none of them. */
#include <stdio.h>
#include <string.h>

static void peek(const char *path)
{
	char line[256];
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return;
	if (fgets(line, sizeof(line), f) != NULL)
		printf("LEAK %s: %s", path, line);
	fclose(f);
}

int main(void)
{
	peek("@REPO@/solutions/01-signal/worker.c");
	peek("@REPO@/grader/tests/test_lab01_signal.py");
	peek("@CLASSMATE@/precious.txt");
	peek("@REPO@/README.md");
	peek("/etc/shadow");
	peek("/root/.bashrc");
	return 1;
}
