/* tmp_files.c - hostile: creates empty files in /tmp without end (a tmpfs: each inode is the machine's
 * memory, and an empty file uses no blocks, so a size limit alone never stops it), up to a million,
 * then waits. Expected: the watchdog counts the files of /tmp as the program's, kills it past the
 * limit and says so. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	char path[64];
	int fd, i;

	for (i = 0; i < 1000000; i++) {
		snprintf(path, sizeof(path), "/tmp/f%d", i);
		fd = open(path, O_WRONLY | O_CREAT, 0644);
		if (fd == -1)
			break;
		close(fd);
	}
	printf("made %d files\n", i);
	fflush(stdout);
	for (;;)
		pause();
}
