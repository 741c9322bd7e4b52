/* write_outside.c - hostile: tries to create files outside its folder: in /tmp, in every folder above its
 * working directory, in $HOME, and in the folder @SENTINEL@ (filled in by the test). Expected: nothing
 * appears outside the grader's scratch folder. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void try_create(const char *dir)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/hostile-was-here", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		(void)write(fd, "x\n", 2);
		close(fd);
	}
}

int main(void)
{
	char up[4096] = ".";
	const char *home = getenv("HOME");

	try_create("/tmp");
	try_create("/var/tmp");
	try_create("/root");
	try_create("@SENTINEL@");
	if (home)
		try_create(home);
	for (int i = 0; i < 12 && strlen(up) + 4 < sizeof(up); i++) {
		strcat(up, "/..");
		try_create(up);
	}
	puts("done");
	return 0;
}
