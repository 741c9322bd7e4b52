/* button.c

   Press the buttons of the simulated button board (wb_board.ko).

   The board is controlled through debugfs: each line N has a directory
   /sys/kernel/debug/wb-board/lineN holding a "ctl" file, which takes one
   command per write, and a "stats" file.  This program writes those
   commands for you.  A write blocks until the edges it asked for have been
   made and their interrupts sent, so when this program returns the
   learner's interrupt handler has run; -n starts the job and returns at
   once ('button wait' waits for it later).

   Usage: button --help

   Build: gcc -static -O2 -Wall -Wextra -Werror -o button button.c
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_DIR "/sys/kernel/debug/wb-board"
#define NLINES_MAX 64

static const char *board_dir = DEFAULT_DIR;

/* Print a message, with the text for 'err' if it is not 0, and exit. */
static void __attribute__((noreturn))
errExit(int err, const char *format, ...)
{
    va_list ap;

    fflush(stdout);
    fprintf(stderr, "button: ");
    va_start(ap, format);
    vfprintf(stderr, format, ap);
    va_end(ap);
    if (err != 0)
        fprintf(stderr, ": %s", strerror(err));
    fprintf(stderr, "\n");
    exit(EXIT_FAILURE);
}

static void __attribute__((noreturn))
usage(FILE *fp, int status)
{
    fprintf(fp,
"Usage: button [-n] [-d DIR] COMMAND [ARGS...]\n"
"\n"
"Press the buttons of the simulated board.  LINE defaults to 0, the\n"
"button (active low: pressing pulls the line low, a falling edge;\n"
"releasing lets it rise).  Lines 1 to 3 are the switches SW1..SW3,\n"
"wired the same way, each the device of its own driver (wb-switch.N).\n"
"\n"
"  press [LINE]                 press and keep pressed (one falling edge)\n"
"  release [LINE]               release (one rising edge)\n"
"  click [HOLD_US [LINE]]       press, hold HOLD_US (default 1000), release\n"
"  burst N INTERVAL_US [LINE]   N presses, each followed by its release:\n"
"                               2*N edges.  A press starts every\n"
"                               INTERVAL_US and is released INTERVAL_US/2\n"
"                               later; 0 means as fast as the board can\n"
"                               (a button already held gives 2*N-1 edges)\n"
"  bounce K [GAP_US [LINE]]     from now on every press and release of LINE\n"
"                               bounces K times: 2*K extra edges, GAP_US\n"
"                               (default 100) apart; K=0 turns bounce off\n"
"  wait [LINE]                  wait until LINE's job (burst...) is done\n"
"  stop [LINE]                  stop LINE's job\n"
"  reset [LINE]                 zero LINE's counters\n"
"  unplug [LINE]                take LINE's device away, as if unplugged:\n"
"                               its driver's remove() runs, open files\n"
"                               or not (line 0: wb-button; 1-3: wb-switch.N)\n"
"  plug [LINE]                  bring it back: the driver probes it again\n"
"  stats [LINE]                 a table of every line, or all of LINE's\n"
"                               counters\n"
"\n"
"Options:\n"
"  -n       do not wait: start the job and return (see 'wait')\n"
"  -d DIR   the board's debugfs folder (default " DEFAULT_DIR ")\n"
"  -h, --help  this text\n"
"\n"
"Each command returns when its last edge's interrupt handler has run\n"
"(unless -n).  press, release, click and burst fail with 'Device or\n"
"resource busy' while a job runs on the line.  A signal stops the job\n"
"it interrupts.\n"
"\n"
"Counters (stats): edges made; ignored: no interrupt asked for them;\n"
"irqs: interrupts raised; delivered: of those, the handler ran (as in\n"
"/proc/interrupts); deferred: raised while the IRQ was disabled, resent\n"
"when enabled; coalesced: edges merged into an interrupt already\n"
"pending (lost); late: edges made later than asked.\n");
    exit(status);
}

/* Bad command line: say what is wrong, show the synopsis, exit 2. */
static void __attribute__((noreturn, format(printf, 1, 2)))
usageError(const char *format, ...)
{
    va_list ap;

    fprintf(stderr, "button: ");
    va_start(ap, format);
    vfprintf(stderr, format, ap);
    va_end(ap);
    fprintf(stderr, "\n"
"Usage: button [-n] [-d DIR] press|release [LINE]\n"
"       button [-n] [-d DIR] click [HOLD_US [LINE]]\n"
"       button [-n] [-d DIR] burst N INTERVAL_US [LINE]\n"
"       button [-d DIR] bounce K [GAP_US [LINE]]\n"
"       button [-d DIR] wait|stop|reset|stats|unplug|plug [LINE]\n"
"Try 'button --help' for more information.\n");
    exit(2);
}

/* Convert a decimal argument from min to max, or exit naming it. */
static unsigned long
getNum(const char *arg, const char *name, unsigned long min,
       unsigned long max)
{
    unsigned long val;
    char *end;

    errno = 0;
    val = strtoul(arg, &end, 10);
    if (*arg < '0' || *arg > '9' || errno != 0 || *end != '\0' ||
            val < min || val > max)
        usageError("%s must be a number from %lu to %lu, not '%s'",
                   name, min, max, arg);
    return val;
}

static void
linePath(char *buf, size_t size, unsigned long line, const char *file)
{
    if ((size_t) snprintf(buf, size, "%s/line%lu/%s", board_dir, line, file)
            >= size)
        errExit(0, "board folder name too long");
}

/* Write 'cmd' to line's ctl file; blocks until done unless 'nowait'. */
static void
sendCommand(unsigned long line, const char *cmd, int nowait)
{
    char path[PATH_MAX];
    ssize_t n;
    int fd;

    linePath(path, sizeof(path), line, "ctl");
    fd = open(path, O_WRONLY | (nowait ? O_NONBLOCK : 0));
    if (fd == -1) {
        if (errno == ENOENT)
            errExit(errno, "open %s (board not loaded, no line %lu, "
                    "or debugfs not mounted?)", path, line);
        errExit(errno, "open %s", path);
    }

    n = write(fd, cmd, strlen(cmd));
    if (n == -1) {
        int err = errno;

        if (err == EEXIST || (err == ENODEV && strcmp(cmd, "unplug") == 0))
            errExit(err, "line %lu: its device is already %s", line,
                    err == EEXIST ? "plugged in" : "unplugged");
        if (err == EBUSY)
            errExit(err, "line %lu: a job is running "
                    "('button wait %lu' or 'button stop %lu')",
                    line, line, line);
        errExit(err, "line %lu: '%s'", line, cmd);
    }
    if ((size_t) n != strlen(cmd))
        errExit(0, "line %lu: short write of '%s'", line, cmd);

    if (close(fd) == -1)
        errExit(errno, "close %s", path);
}

/* Read line's stats file into buf; return 0, or -1 if the line is absent. */
static int
readStats(unsigned long line, char *buf, size_t size)
{
    char path[PATH_MAX];
    size_t len = 0;
    ssize_t n;
    int fd;

    linePath(path, sizeof(path), line, "stats");
    fd = open(path, O_RDONLY);
    if (fd == -1) {
        if (errno == ENOENT)
            return -1;
        errExit(errno, "open %s", path);
    }
    while (len < size - 1) {
        n = read(fd, buf + len, size - 1 - len);
        if (n == -1)
            errExit(errno, "read %s", path);
        if (n == 0)
            break;
        len += n;
    }
    buf[len] = '\0';
    if (close(fd) == -1)
        errExit(errno, "close %s", path);
    return 0;
}

/* The value of "key value" line 'key' in stats text, or "?" if absent. */
static const char *
statValue(const char *stats, const char *key, char *val, size_t size)
{
    size_t klen = strlen(key);
    const char *p = stats;

    while (*p != '\0') {
        if (strncmp(p, key, klen) == 0 && p[klen] == ' ') {
            size_t i = 0;

            p += klen + 1;
            while (p[i] != '\n' && p[i] != '\0' && i < size - 1) {
                val[i] = p[i];
                i++;
            }
            val[i] = '\0';
            return val;
        }
        p = strchr(p, '\n');
        if (p == NULL)
            break;
        p++;
    }
    snprintf(val, size, "?");
    return val;
}

/* Narrow columns for the flags, wider ones for the counters. */
static int
colWidth(const char *head)
{
    int len = (int) strlen(head);

    if (strcmp(head, "level") == 0 || strcmp(head, "busy") == 0)
        return len;
    return len > 9 ? len : 9;
}

static void
showStats(int haveLine, unsigned long line)
{
    static const char *const cols[] = {
        "level", "busy", "trigger", "edges", "ignored", "irqs", "delivered",
        "deferred", "coalesced", "late", "last_job_ns",
    };
    static const char *const heads[] = {
        "level", "busy", "trigger", "edges", "ignored", "irqs", "delivered",
        "deferred", "coalesced", "late", "job_ns",
    };
    char stats[4096], val[32];
    unsigned long l;
    size_t i;

    if (haveLine) {
        if (readStats(line, stats, sizeof(stats)) == -1)
            errExit(ENOENT, "no line %lu on the board in %s", line, board_dir);
        fputs(stats, stdout);
        return;
    }

    if (readStats(0, stats, sizeof(stats)) == -1)
        errExit(ENOENT, "%s/line0 (board not loaded, or debugfs not "
                "mounted?)", board_dir);
    printf("%-4s", "line");
    for (i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
        printf(" %*s", colWidth(heads[i]), heads[i]);
    printf("\n");
    for (l = 0; l < NLINES_MAX; l++) {
        if (l > 0 && readStats(l, stats, sizeof(stats)) == -1)
            break;
        printf("%-4lu", l);
        for (i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
            printf(" %*s", colWidth(heads[i]),
                   statValue(stats, cols[i], val, sizeof(val)));
        printf("\n");
    }
}

int
main(int argc, char *argv[])
{
    unsigned long line = 0, a, b;
    const char *cmd;
    char buf[96];
    int nowait = 0, opt, nargs;
    char **args;

    if (argc > 1 && strcmp(argv[1], "--help") == 0)
        usage(stdout, EXIT_SUCCESS);

    opterr = 0;
    while ((opt = getopt(argc, argv, "+nd:h")) != -1) {
        switch (opt) {
        case 'n': nowait = 1;           break;
        case 'd': board_dir = optarg;   break;
        case 'h': usage(stdout, EXIT_SUCCESS);
        default:
            if (optopt == 'd')
                usageError("-d needs the board's folder");
            usageError("unknown option '-%c'", optopt);
        }
    }
    if (optind >= argc)
        usageError("no command");

    cmd = argv[optind];
    args = &argv[optind + 1];
    nargs = argc - optind - 1;

    if (strcmp(cmd, "--help") == 0) {
        usage(stdout, EXIT_SUCCESS);

    } else if (strcmp(cmd, "press") == 0 || strcmp(cmd, "release") == 0 ||
               strcmp(cmd, "wait") == 0 || strcmp(cmd, "stop") == 0 ||
               strcmp(cmd, "reset") == 0 || strcmp(cmd, "unplug") == 0 ||
               strcmp(cmd, "plug") == 0) {
        if (nargs > 1)
            usageError("wrong number of arguments for '%s'", cmd);
        if (nargs == 1)
            line = getNum(args[0], "LINE", 0, NLINES_MAX - 1);
        sendCommand(line, cmd, nowait);

    } else if (strcmp(cmd, "click") == 0) {
        if (nargs > 2)
            usageError("wrong number of arguments for '%s'", cmd);
        if (nargs >= 1) {
            a = getNum(args[0], "HOLD_US", 1, 10000000);
            snprintf(buf, sizeof(buf), "click %lu", a);
        } else {
            snprintf(buf, sizeof(buf), "click");
        }
        if (nargs == 2)
            line = getNum(args[1], "LINE", 0, NLINES_MAX - 1);
        sendCommand(line, buf, nowait);

    } else if (strcmp(cmd, "burst") == 0) {
        if (nargs < 2 || nargs > 3)
            usageError("wrong number of arguments for '%s'", cmd);
        a = getNum(args[0], "N", 1, 10000000);
        b = getNum(args[1], "INTERVAL_US", 0, 10000000);
        if (nargs == 3)
            line = getNum(args[2], "LINE", 0, NLINES_MAX - 1);
        snprintf(buf, sizeof(buf), "burst %lu %lu", a, b);
        sendCommand(line, buf, nowait);

    } else if (strcmp(cmd, "bounce") == 0) {
        if (nargs < 1 || nargs > 3)
            usageError("wrong number of arguments for '%s'", cmd);
        a = getNum(args[0], "K", 0, 1000);
        if (nargs >= 3)
            line = getNum(args[2], "LINE", 0, NLINES_MAX - 1);
        if (nargs >= 2) {
            b = getNum(args[1], "GAP_US", 1, 10000000);
            snprintf(buf, sizeof(buf), "bounce %lu %lu", a, b);
        } else {
            snprintf(buf, sizeof(buf), "bounce %lu", a);
        }
        sendCommand(line, buf, nowait);

    } else if (strcmp(cmd, "stats") == 0) {
        if (nargs > 1)
            usageError("wrong number of arguments for '%s'", cmd);
        if (nargs == 1)
            line = getNum(args[0], "LINE", 0, NLINES_MAX - 1);
        showStats(nargs == 1, line);

    } else {
        usageError("unknown command '%s'", cmd);
    }

    if (fflush(stdout) == EOF || ferror(stdout))
        errExit(errno, "write to standard output");
    exit(EXIT_SUCCESS);
}
