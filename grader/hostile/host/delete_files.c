/* delete_files.c - hostile: tries to delete files it does not own: the sentinel folder @SENTINEL@ (filled
 * in by the test) and the files of every folder above its working directory. Expected: nothing outside
 * the scratch folder changes. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int zap(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

int main(void)
{
	char up[4096] = "..";

	nftw("@SENTINEL@", zap, 16, FTW_DEPTH | FTW_PHYS);
	for (int i = 0; i < 4 && strlen(up) + 4 < sizeof(up); i++) {
		nftw(up, zap, 16, FTW_DEPTH | FTW_PHYS);
		strcat(up, "/..");
	}
	puts("done");
	return 0;
}
