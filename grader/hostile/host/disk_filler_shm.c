/* disk_filler_shm.c - hostile: fills /dev/shm (a tmpfs: the machine's memory) with 8 MiB files, each
 * under the per-file limit, up to 512 MiB, then waits. Expected: /dev/shm counts as the program's disk,
 * and the watchdog kills it once it holds more than the limit, and says so. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char block[1 << 20];

int main(void)
{
	char path[64];
	int fd, mib = 0;

	memset(block, 'x', sizeof(block));
	for (int i = 0; mib < 512; i++) {
		snprintf(path, sizeof(path), "/dev/shm/fill%d", i);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd == -1)
			break;
		for (int n = 0; n < 8 && write(fd, block, sizeof(block)) == (ssize_t)sizeof(block); n++)
			mib++;
		close(fd);
	}
	printf("/dev/shm took %d MiB\n", mib);
	fflush(stdout);
	for (;;)
		pause();
}
