/* buttonwatch.c

   Watch the button with signal-driven I/O.

   Opens /dev/button (button_driver.ko), makes this process the owner of
   the open file (F_SETOWN) and turns on O_ASYNC, so that the driver's
   kill_fasync() sends us SIGIO at every press and release.  The SIGIO
   handler reads every waiting record and prints one line per event:

       event 3: pressed at 123456789 ns

   It uses only async-signal-safe calls (read(2), write(2)), so it can
   print from inside the handler.  SIGINT or SIGTERM ends the program: it
   closes the device, says how many events it saw in how many SIGIO
   deliveries ("20 events in 7 SIGIO deliveries": a standard signal does
   not queue, Lab 4's subject), and exits with status 0.

   The order of the setup matters: the handler is installed before O_ASYNC
   is turned on (SIGIO's default action kills the process), and the owner
   is set before too (without one, nobody gets the signal).  O_ASYNC is
   turned on with fcntl(F_SETFL), never given to open(): open() would set
   the flag without registering the file, and no fcntl() could repair that.

   Usage: buttonwatch [DEVICE]          (default /dev/button)
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "button_event.h"

#define BATCH 16                        /* records per read(2) */

static int devFd = -1;                  /* the device, read by the handler */
static volatile sig_atomic_t events;    /* records reported so far */
static volatile sig_atomic_t deliveries; /* SIGIO handler runs */
static volatile sig_atomic_t stopSig;   /* SIGINT or SIGTERM, once caught */

static void
die(const char *what)
{
    perror(what);
    exit(EXIT_FAILURE);
}

/* --- async-signal-safe output: no stdio, no malloc ------------------ */

/* Append the string s at *p (not past end); return the new end. */
static char *
putStr(char *p, char *end, const char *s)
{
    while (*s != '\0' && p < end)
        *p++ = *s++;
    return p;
}

/* Append the decimal digits of v. */
static char *
putNum(char *p, char *end, unsigned long long v)
{
    char digits[24];
    int n = 0;

    do {
        digits[n++] = '0' + v % 10;
        v /= 10;
    } while (v != 0);
    while (n > 0 && p < end)
        *p++ = digits[--n];
    return p;
}

/* Write all of buf to stdout; give up quietly if stdout is gone. */
static void
writeOut(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, buf, len);

        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= n;
    }
}

/* Print "event SEQ: pressed|released at TIME ns". */
static void
reportEvent(const struct button_event *ev)
{
    char line[96], *p = line, *end = line + sizeof(line) - 1;

    p = putStr(p, end, "event ");
    p = putNum(p, end, ev->seq);
    p = putStr(p, end, ev->pressed ? ": pressed at " : ": released at ");
    p = putNum(p, end, ev->time_ns);
    p = putStr(p, end, " ns");
    *p++ = '\n';
    writeOut(line, p - line);
}

/* --- the handlers --------------------------------------------------- */

/* SIGIO: read and report every record waiting, until EAGAIN.  One SIGIO
   may stand for several events (standard signals do not queue), so read
   until the ring is empty, not one record per signal. */
static void
sigioHandler(int sig)
{
    /* TODO 3: count the delivery; read(2) the records (the fd is O_NONBLOCK) until EAGAIN,
       reportEvent() each and count it; keep errno. */
    static const char readError[] = "buttonwatch: read error in the SIGIO handler\n";
    struct button_event ev[BATCH];
    int savedErrno = errno;
    ssize_t n, i;

    (void) sig;
    deliveries++;
    while ((n = read(devFd, ev, sizeof(ev))) > 0) {
        for (i = 0; i < n / (ssize_t) sizeof(ev[0]); i++) {
            reportEvent(&ev[i]);
            events++;
        }
    }
    if (n == -1 && errno != EAGAIN && errno != EINTR)
        writeOut(readError, sizeof(readError) - 1);
    errno = savedErrno;
    //> (void)sig;
    //> (void)reportEvent;
    /* END TODO */
}

static void
stopHandler(int sig)
{
    stopSig = sig;
}

int main(int argc, char *argv[])
{
    const char *path = "/dev/button";
    struct sigaction sa;
    sigset_t stopMask, origMask;
    char line[96], *p;
    int flags;

    if (argc > 2 || (argc == 2 && strcmp(argv[1], "--help") == 0)) {
        fprintf(stderr, "Usage: %s [DEVICE]   (default /dev/button)\n"
                "Prints one line per press and release; SIGINT or SIGTERM "
                "ends it.\n", argv[0]);
        exit(argc == 2 ? EXIT_SUCCESS : EXIT_FAILURE);
    }
    if (argc == 2)
        path = argv[1];

    /* O_NONBLOCK: the handler reads until EAGAIN and must never sleep. */
    devFd = open(path, O_RDONLY | O_NONBLOCK);
    if (devFd == -1)
        die(path);

    /* SIGINT and SIGTERM stay blocked except inside sigsuspend() below,
       so a stop request cannot slip in between the test and the wait. */
    sigemptyset(&stopMask);
    sigaddset(&stopMask, SIGINT);
    sigaddset(&stopMask, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &stopMask, &origMask) == -1)
        die("sigprocmask");

    /* TODO 3: install sigioHandler for SIGIO and stopHandler for SIGINT and SIGTERM (sigaction(2)). */
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = sigioHandler;
    if (sigaction(SIGIO, &sa, NULL) == -1)
        die("sigaction SIGIO");
    sa.sa_handler = stopHandler;
    if (sigaction(SIGINT, &sa, NULL) == -1)
        die("sigaction SIGINT");
    if (sigaction(SIGTERM, &sa, NULL) == -1)
        die("sigaction SIGTERM");
    //> (void)sa;
    //> (void)sigioHandler;
    //> (void)stopHandler;
    /* END TODO */

    /* TODO 3: make this process the owner (F_SETOWN), then turn on O_ASYNC with F_GETFL/F_SETFL (fcntl(2)). */
    if (fcntl(devFd, F_SETOWN, getpid()) == -1)
        die("fcntl F_SETOWN");
    flags = fcntl(devFd, F_GETFL);
    if (flags == -1)
        die("fcntl F_GETFL");
    if (fcntl(devFd, F_SETFL, flags | O_ASYNC) == -1)
        die("fcntl F_SETFL O_ASYNC");
    //> (void)flags;
    /* END TODO */

    p = putStr(line, line + sizeof(line) - 1, "ready: watching ");
    p = putStr(p, line + sizeof(line) - 1, path);
    *p++ = '\n';
    writeOut(line, p - line);

    while (!stopSig)
        sigsuspend(&origMask);          /* returns after each handler */

    /* Block SIGIO so the handler cannot run on a closed descriptor. */
    sigaddset(&stopMask, SIGIO);
    if (sigprocmask(SIG_BLOCK, &stopMask, NULL) == -1)
        die("sigprocmask");
    if (close(devFd) == -1)
        die("close");

    printf("buttonwatch: %s, exiting\n%d events in %d SIGIO deliveries\n",
           stopSig == SIGINT ? "SIGINT" : "SIGTERM", (int) events, (int) deliveries);
    if (fflush(stdout) == EOF)
        die("stdout");
    exit(EXIT_SUCCESS);
}
