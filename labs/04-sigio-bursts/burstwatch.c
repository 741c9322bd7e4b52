/* burstwatch.c

   Watch the button through bursts, and count what signal-driven I/O
   gives: SIGIO deliveries, records read, events lost.

   SIGIO is a standard signal: while it is pending, more kill_fasync()
   calls merge into it.  So one SIGIO means "at least one record", and the
   handler reads until EAGAIN.  Each delivery prints one line:

       SIGIO 3: read 17, seq 41 to 57

   Every record carries a sequence number (seq).  A jump means that the
   driver's ring (BUTTON_RING_SIZE records per open file) overflowed while
   we were not reading, and the program names what it lost, exactly:

       lost 136: seq 3 to 138

   SIGUSR1 holds SIGIO (blocks it): events pile up in the ring and their
   signals merge into one pending SIGIO.  The next SIGUSR1 takes it again,
   and that one pending SIGIO is delivered:

       holding SIGIO
       taking SIGIO

   SIGINT or SIGTERM ends it: it reads what is left ("at exit: read 2, seq
   5 to 6"), then prints the totals and exits with status 0:

       200 events in 9 SIGIO deliveries: 200 read, 0 lost

   All output is made with write(2) by async-signal-safe helpers, from the
   handler and from main alike, so the lines come out in order.

   Usage: burstwatch [DEVICE]          (default /dev/button)
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "button_event.h"

#define BATCH 16                        /* records per read(2) */

static int devFd = -1;                  /* the device, read by the handler */

/* Counts, changed only by the SIGIO handler (or by main with every
   signal blocked), read by main. */
static volatile sig_atomic_t deliveries;        /* SIGIO handler runs */
static volatile sig_atomic_t recordsRead;
static volatile sig_atomic_t eventsLost;        /* seq numbers never read */
static uint32_t lastSeq;                /* the last record's seq; 0: none yet */

static volatile sig_atomic_t stopSig;   /* SIGINT or SIGTERM, once caught */
static volatile sig_atomic_t toggleHold;        /* SIGUSR1 came */

static void
die(const char *what)
{
    perror(what);
    exit(EXIT_FAILURE);
}

/* --- async-signal-safe output: no stdio, no malloc ------------------ */

struct line {
    char buf[128];
    char *p;
};

static void
lineStart(struct line *l)
{
    l->p = l->buf;
}

static void
putStr(struct line *l, const char *s)
{
    while (*s != '\0' && l->p < l->buf + sizeof(l->buf) - 1)
        *l->p++ = *s++;
}

static void
putNum(struct line *l, unsigned long long v)
{
    char digits[24];
    int n = 0;

    do {
        digits[n++] = '0' + v % 10;
        v /= 10;
    } while (v != 0);
    while (n > 0 && l->p < l->buf + sizeof(l->buf) - 1)
        *l->p++ = digits[--n];
}

/* End the line with '\n' and write it all to stdout. */
static void
lineEnd(struct line *l)
{
    const char *s = l->buf;
    size_t len;

    *l->p++ = '\n';
    len = l->p - l->buf;
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, s, len);

        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        s += n;
        len -= n;
    }
}

static void
say(const char *s)
{
    struct line l;

    lineStart(&l);
    putStr(&l, s);
    lineEnd(&l);
}

/* --- reading ------------------------------------------------------------ */

/* One record read: count it.  A seq that is not the one after lastSeq
   means the ring overwrote the records between: count them as lost, and
   say which.  (The first record ever read has nothing to compare with.) */
static void
account(const struct button_event *ev)
{
    /* TODO 3: if lastSeq is not 0 and ev->seq is not lastSeq + 1, add the gap to
       eventsLost and say "lost N: seq A to B". */
    lastSeq = ev->seq;
    recordsRead++;
}

/* Read records until EAGAIN, account() for each.  Returns how many;
   *first and *last get the seq of the first and last one read. */
static int
drain(uint32_t *first, uint32_t *last)
{
    struct button_event ev[BATCH];
    int got = 0;
    ssize_t n;

    /* TODO 2: read(2) until it fails with EAGAIN (the fd is O_NONBLOCK); account() for
       every record, count it in got, and keep its seq in *first (the first) and *last. */
    (void)ev;
    (void)n;
    (void)first;
    (void)last;
    (void)account;
    (void)say;
    return got;
}

/* "read N, seq A to B" (or "read 0"), after the prefix already in l. */
static void
reportRead(struct line *l, int got, uint32_t first, uint32_t last)
{
    putStr(l, "read ");
    putNum(l, got);
    if (got > 0) {
        putStr(l, ", seq ");
        putNum(l, first);
        putStr(l, " to ");
        putNum(l, last);
    }
    lineEnd(l);
}

/* --- the handlers --------------------------------------------------- */

/* SIGIO: one delivery, for one or for many events.  Count it, read
   everything there is, and say so: "SIGIO 3: read 17, seq 41 to 57". */
static void
sigioHandler(int sig)
{
    int savedErrno = errno;

    /* TODO 1: count the delivery; drain(); print "SIGIO N: " and reportRead(). */
    (void)sig;
    errno = savedErrno;
}

static void
stopHandler(int sig)
{
    stopSig = sig;
}

static void
holdHandler(int sig)
{
    (void) sig;
    toggleHold = 1;
}

int main(int argc, char *argv[])
{
    const char *path = "/dev/button";
    sigset_t all, origMask, heldMask;
    struct sigaction sa;
    uint32_t first = 0, last = 0;
    struct line l;
    int flags, got, held = 0;

    if (argc > 2 || (argc == 2 && strcmp(argv[1], "--help") == 0)) {
        fprintf(stderr, "Usage: %s [DEVICE]   (default /dev/button)\n"
                "One line per SIGIO delivery: what it read.  SIGUSR1 holds SIGIO,\n"
                "SIGUSR1 again takes it; SIGINT or SIGTERM prints the totals and ends it.\n",
                argv[0]);
        exit(argc == 2 ? EXIT_SUCCESS : EXIT_FAILURE);
    }
    if (argc == 2)
        path = argv[1];

    /* O_NONBLOCK: the handler reads until EAGAIN and must never sleep. */
    devFd = open(path, O_RDONLY | O_NONBLOCK);
    if (devFd == -1)
        die(path);

    /* Every signal we handle stays blocked except inside sigsuspend(), so
       the handlers never interrupt main, and no signal slips in between a
       test of a flag and the wait. */
    sigemptyset(&all);
    sigaddset(&all, SIGIO);
    sigaddset(&all, SIGUSR1);
    sigaddset(&all, SIGINT);
    sigaddset(&all, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &all, &origMask) == -1)
        die("sigprocmask");
    heldMask = origMask;
    sigaddset(&heldMask, SIGIO);

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = sigioHandler;
    if (sigaction(SIGIO, &sa, NULL) == -1)
        die("sigaction SIGIO");
    sa.sa_handler = holdHandler;
    if (sigaction(SIGUSR1, &sa, NULL) == -1)
        die("sigaction SIGUSR1");
    sa.sa_handler = stopHandler;
    if (sigaction(SIGINT, &sa, NULL) == -1 || sigaction(SIGTERM, &sa, NULL) == -1)
        die("sigaction SIGINT/SIGTERM");

    if (fcntl(devFd, F_SETOWN, getpid()) == -1)
        die("fcntl F_SETOWN");
    flags = fcntl(devFd, F_GETFL);
    if (flags == -1 || fcntl(devFd, F_SETFL, flags | O_ASYNC) == -1)
        die("fcntl F_SETFL O_ASYNC");

    lineStart(&l);
    putStr(&l, "ready: watching ");
    putStr(&l, path);
    lineEnd(&l);

    while (!stopSig) {
        /* TODO 1: wait with SIGIO blocked while held (heldMask), else with origMask;
           at each SIGUSR1 toggle held and say "holding SIGIO" or "taking SIGIO". */
        sigsuspend(&origMask);
        (void)heldMask;
        (void)held;
    }

    /* Every signal is blocked again: read what is left, without a SIGIO. */
    got = drain(&first, &last);
    if (got > 0) {
        lineStart(&l);
        putStr(&l, "at exit: ");
        reportRead(&l, got, first, last);
    }
    if (close(devFd) == -1)
        die("close");

    lineStart(&l);
    putNum(&l, recordsRead + eventsLost);
    putStr(&l, " events in ");
    putNum(&l, deliveries);
    putStr(&l, " SIGIO deliveries: ");
    putNum(&l, recordsRead);
    putStr(&l, " read, ");
    putNum(&l, eventsLost);
    putStr(&l, " lost");
    lineEnd(&l);
    exit(EXIT_SUCCESS);
}
