/* waitline.c

   Wait for a program's next line of output that matches a pattern, in the
   lab VM, without looking again and again: the grader's GuestProc.expect().

   A program under test writes its output to a file (FILE).  When it ends,
   the file STATUS appears beside it.  This helper reads FILE from line FIRST
   on (1 is the first line, as `tail -n +FIRST` counts) and prints the first
   line that matches the extended regular expression PATTERN, prefixed with
   its number counted from FIRST and a colon, as `grep -n` prints it:

       3:got SIGIO code 1 fd 3

   A last line with no newline yet counts as a line, as it does for grep.
   Between two looks it sleeps in read(2) on an inotify descriptor that
   watches FILE's folder, so it wakes when something is written there (or
   STATUS is made) and costs nothing while the program is quiet.  Under TCG
   the loop it replaces started tail and grep at every look, about 10 ms of
   the VM's only CPU each time.

   Exit status: 0 a line matched; 3 STATUS exists and no line matched (the
   program ended without printing one); 2 a usage or system error.  There is
   no timeout: the grader's agent kills the helper when the test's wait ends.

   Usage: waitline FILE FIRST PATTERN STATUS
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

/* A missed wake-up (a write through a path inotify does not see) costs at
   most this long. */
#define SAFETY_MS 250

static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("waitline: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

/* Where the next look starts: the byte after the last whole line read,
   and that line's number (lines before FIRST are skipped, not matched). */
static off_t pos;
static long lineno;

/* Look at what was added to FILE since the last look: 1 and print the
   match, or 0. */
static int look(const char *file, long first, regex_t *re)
{
    FILE *f = fopen(file, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int found = 0;

    if (f == NULL) {
        if (errno == ENOENT)
            return 0;
        die("%s: %s", file, strerror(errno));
    }
    if (fseeko(f, pos, SEEK_SET) == -1)
        die("%s: %s", file, strerror(errno));
    while (!found && (len = getline(&line, &cap, f)) > 0) {
        int whole = line[len - 1] == '\n';

        if (whole)
            line[len - 1] = '\0';
        if (lineno + 1 >= first && regexec(re, line, 0, NULL, 0) == 0) {
            printf("%ld:%s\n", lineno + 1 - first + 1, line);
            found = 1;
        }
        if (!whole)     /* read again at the next look, when it may be whole */
            break;
        pos += len;
        lineno++;
    }
    free(line);
    fclose(f);
    return found;
}

int main(int argc, char *argv[])
{
    char *copy, *dir, *end;
    const char *file, *status;
    long first;
    regex_t re;
    int fd, rc;
    char events[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

    if (argc != 5) {
        fprintf(stderr, "Usage: %s FILE FIRST PATTERN STATUS\n", argv[0]);
        return 2;
    }
    file = argv[1];
    status = argv[4];
    first = strtol(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || first < 1)
        die("FIRST must be a line number (1 or more): %s", argv[2]);
    rc = regcomp(&re, argv[3], REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char why[256];

        regerror(rc, &re, why, sizeof(why));
        die("bad pattern %s: %s", argv[3], why);
    }

    /* The watch comes first: what is written after it wakes the read. */
    copy = strdup(file);
    if (copy == NULL)
        die("out of memory");
    dir = dirname(copy);
    fd = inotify_init1(IN_CLOEXEC);
    if (fd == -1)
        die("inotify_init1: %s", strerror(errno));
    if (inotify_add_watch(fd, dir, IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE) == -1)
        die("inotify_add_watch %s: %s", dir, strerror(errno));

    for (;;) {
        /* STATUS first: output written before the program ended is all
           there when the look after it finds no match. */
        int ended = access(status, F_OK) == 0;
        struct pollfd p = { .fd = fd, .events = POLLIN };

        if (look(file, first, &re)) {
            if (fflush(stdout) == EOF)
                die("stdout: %s", strerror(errno));
            return 0;
        }
        if (ended)
            return 3;
        rc = poll(&p, 1, SAFETY_MS);
        if (rc == -1 && errno != EINTR)
            die("poll: %s", strerror(errno));
        if (rc > 0 && read(fd, events, sizeof(events)) == -1 && errno != EINTR)
            die("read: %s", strerror(errno));
    }
}
