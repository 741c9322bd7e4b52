/* fifo_log.c - hostile: replaces the checker's log in its folder with a FIFO, so that a grader that
 * opens it to read blocks for ever. Expected: no points, and grading goes on at once. */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
	unlink(".sigsafe.log");
	if (mkfifo(".sigsafe.log", 0666) == -1)
		perror("mkfifo");
	puts("ready (pid 1)");
	return 0;
}
