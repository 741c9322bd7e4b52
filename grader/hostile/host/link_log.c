/* link_log.c - hostile: replaces the async-signal-safety checker's log in its folder with a
 * symbolic link to @SECRET@, a file only root may read, hoping the grader (root) quotes it in the
 * report. Expected: no points, and the secret never appears in the report. */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	unlink(".sigsafe.log");
	if (symlink("@SECRET@", ".sigsafe.log") == -1)
		perror("symlink");
	puts("ready (pid 1)");
	return 0;
}
