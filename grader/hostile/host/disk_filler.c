/* disk_filler.c - hostile: fills its private /tmp, then writes 8 MiB files (each under the
 * per-file limit) into its folder without end. Expected: /tmp is full at its size, and the
 * watchdog kills the program once its folder holds more than the limit, and says so. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char block[1 << 20];

static int fill(const char *path, int mib)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644), n = 0;

	if (fd == -1)
		return 0;
	while (n < mib && write(fd, block, sizeof(block)) == (ssize_t)sizeof(block))
		n++;
	close(fd);
	return n;
}

int main(void)
{
	char path[64];
	int tmp = 0, got;

	memset(block, 'x', sizeof(block));
	for (int i = 0; i < 1000; i++) {
		snprintf(path, sizeof(path), "/tmp/fill%d", i);
		got = fill(path, 8);
		tmp += got;
		if (got < 8)
			break;
	}
	printf("/tmp took %d MiB\n", tmp);
	fflush(stdout);
	for (int i = 0;; i++) {
		snprintf(path, sizeof(path), "fill%d", i);
		fill(path, 8);
	}
}
