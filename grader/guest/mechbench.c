/* mechbench.c

   One way of learning that a file has data, measured: lab 6's comparison
   of notification mechanisms (tools/plots/lab6-mechanisms.py runs it for each
   mechanism, on the host with a pipe and in the VM with /dev/button).

   MECH is one of
     sigio      F_SETOWN + O_ASYNC: plain SIGIO, a handler that reads the
                file until EAGAIN (labs 3 and 4)
     setsig     F_SETSIG SIGRTMIN: a SA_SIGINFO handler reads the file of
                si_fd until EAGAIN; SIGIO (the queue was full) reads too (lab 5)
     sigwait    the same signals blocked, taken with sigwaitinfo(); at SIGIO
                the queued ones are flushed, then the file read (lab 6)
     signalfd   the same, read from a signalfd in an epoll set (lab 6)
     epoll      no signal: epoll on the file itself (level-triggered)
     read       no signal: a blocking read(2)

   SOURCE is a device that reads as struct button_event records
   (/dev/button: the first two records, a press and a release the caller
   makes before the burst, are the baseline and not counted; it runs until
   SIGTERM, which the caller sends once the burst is over and the events
   had time to arrive), or "pipe": a
   child writes N records of the same layout, each with its own write(2),
   time_ns the CLOCK_MONOTONIC time of the write, BURST at a time with 1 ms
   between bursts.  A full pipe blocks the writer: a pipe loses nothing.

   It prints "ready" once set up, and after the N-th event of the pipe, or
   at SIGTERM, one line:

     result mech=M events=E lost=L wakeups=W span_ns=S p50_ns=A p99_ns=B cpu_ns=C
            fallbacks=F left=Q

   events: records read; lost: seq numbers the ring overwrote (a gap);
   wakeups: signals handled or waits that returned; span: from the first
   event's time to the receipt of the last; p50, p99: the latency from an
   event's time (the writer's clock_gettime() just before its write(2),
   or the driver's ktime_get_ns() in the interrupt handler) to its receipt
   (clock_gettime() once the read(2) that returned it is back): under a
   burst it includes the time the record waited behind the ones before it,
   the backlog; cpu: this process's user + system time from "ready" on;
   fallbacks: SIGIO taken by a mechanism that asked for SIGRTMIN (the
   queue was full); left: signals still queued when it stops (SIGRTMIN and
   SIGIO, taken with sigtimedwait() and counted after the figures): the
   program stops at its last record, and signals queued for records it
   already read are not waited for.
   A mechanism that has not seen its last event after 30 s says
   "timeout mech=M base=B next=N final=F events=E wakeups=W" instead.

   Usage: mechbench MECH /dev/button | MECH pipe N BURST
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct rec {                    /* struct button_event's layout */
    uint64_t time_ns;
    uint32_t seq;
    uint32_t pressed;
};

#define MAXEV 200000

static uint64_t lat[MAXEV];
static long nLat, lost, wakeups, fallbacks;
static uint32_t base, nextSeq, finalSeq;
static int haveBase, skip;
static long expect;
static uint64_t firstTime, lastRecv;
static int srcFd = -1;
static volatile sig_atomic_t done;

static void die(const char *what)
{
    perror(what);
    exit(EXIT_FAILURE);
}

static uint64_t now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + ts.tv_nsec;
}

/* One record read at time t (async-signal-safe: called from handlers). */
static void take(const struct rec *r, uint64_t t)
{
    if (!haveBase) {
        haveBase = 1;
        base = r->seq;
        nextSeq = base + skip;
        finalSeq = base + skip + expect - 1;
    }
    if (r->seq < base + skip)       /* the baseline */
        return;
    if (r->seq > nextSeq)
        lost += r->seq - nextSeq;   /* overwritten in the ring */
    nextSeq = r->seq + 1;
    if (nLat < MAXEV)
        lat[nLat++] = t > r->time_ns ? t - r->time_ns : 0;
    if (firstTime == 0)
        firstTime = r->time_ns;
    lastRecv = t;
    if (r->seq >= finalSeq)
        done = 1;
}

/* Read the file until EAGAIN (or one read, for a blocking file). */
static void drain(int fd, int once)
{
    struct rec buf[64];
    ssize_t n;
    int saved = errno;

    do {
        n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            uint64_t t = now();

            for (ssize_t i = 0; i < n / (ssize_t) sizeof(buf[0]); i++)
                take(&buf[i], t);
        }
    } while (n > 0 && !once);
    if (n == 0)
        done = 1;               /* a pipe whose writer is gone */
    errno = saved;
}

static volatile sig_atomic_t timedOut;

/* SIGALRM: stuck; SIGTERM: the caller's end.  Neither restarts a wait. */
static void onStop(int sig)
{
    timedOut = sig == SIGALRM;
    done = 1;
}

static void onSigio(int sig)
{
    (void) sig;
    wakeups++;
    drain(srcFd, 0);
}

static void onRt(int sig, siginfo_t *si, void *uc)
{
    (void) uc;
    wakeups++;
    if (sig == SIGIO)
        fallbacks++;
    drain(sig == SIGIO ? srcFd : si->si_fd, 0);
}

static void async(int fd, int rt)
{
    if (fcntl(fd, F_SETOWN, getpid()) == -1)
        die("F_SETOWN");
    if (rt && fcntl(fd, F_SETSIG, SIGRTMIN) == -1)
        die("F_SETSIG");
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC | O_NONBLOCK) == -1)
        die("O_ASYNC");
}

static void flushRt(void)
{
    struct timespec zero = { 0, 0 };
    sigset_t rt;

    sigemptyset(&rt);
    sigaddset(&rt, SIGRTMIN);
    while (sigtimedwait(&rt, NULL, &zero) > 0)
        ;
}

/* Set up MECH on srcFd: the part before the events start. */
static void setup(const char *mech, sigset_t *set, int *sfd, int *ep)
{
    struct sigaction sa;
    struct epoll_event ev = { .events = EPOLLIN };

    sigemptyset(set);
    sigaddset(set, SIGIO);
    sigaddset(set, SIGRTMIN);
    if (sigprocmask(SIG_BLOCK, set, NULL) == -1)
        die("sigprocmask");
    memset(&sa, 0, sizeof(sa));
    sa.sa_mask = *set;
    if (!strcmp(mech, "sigio")) {
        sa.sa_handler = onSigio;
        if (sigaction(SIGIO, &sa, NULL) == -1)
            die("sigaction");
        async(srcFd, 0);
    } else if (!strcmp(mech, "setsig")) {
        sa.sa_flags = SA_SIGINFO;
        sa.sa_sigaction = onRt;
        if (sigaction(SIGIO, &sa, NULL) == -1 || sigaction(SIGRTMIN, &sa, NULL) == -1)
            die("sigaction");
        async(srcFd, 1);
    } else if (!strcmp(mech, "sigwait")) {
        async(srcFd, 1);
    } else if (!strcmp(mech, "signalfd") || !strcmp(mech, "epoll")) {
        int fd = srcFd;

        if (!strcmp(mech, "signalfd")) {
            *sfd = signalfd(-1, set, SFD_NONBLOCK);
            if (*sfd == -1)
                die("signalfd");
            async(srcFd, 1);
            fd = *sfd;
        } else if (fcntl(srcFd, F_SETFL, fcntl(srcFd, F_GETFL) | O_NONBLOCK) == -1) {
            die("O_NONBLOCK");
        }
        *ep = epoll_create1(0);
        ev.data.fd = fd;
        if (*ep == -1 || epoll_ctl(*ep, EPOLL_CTL_ADD, fd, &ev) == -1)
            die("epoll");
    } else if (strcmp(mech, "read") != 0) {
        fprintf(stderr, "mechbench: no mechanism %s\n", mech);
        exit(2);
    }
}

/* Wait and read until the last event, with MECH. */
static void run(const char *mech, const sigset_t *set, int sfd, int ep)
{
    sigset_t none;
    struct epoll_event ev;
    struct signalfd_siginfo fi;

    sigemptyset(&none);
    if (!strcmp(mech, "sigio") || !strcmp(mech, "setsig")) {
        while (!done)
            sigsuspend(&none);  /* the handlers read */
    } else if (!strcmp(mech, "sigwait")) {
        while (!done) {
            int sig = sigwaitinfo(set, NULL);

            if (sig == -1 && errno == EINTR)
                continue;
            if (sig == -1)
                die("sigwaitinfo");
            wakeups++;
            if (sig == SIGIO) {
                fallbacks++;
                flushRt();
            }
            drain(srcFd, 0);
        }
    } else if (!strcmp(mech, "signalfd") || !strcmp(mech, "epoll")) {
        while (!done) {
            int n = epoll_wait(ep, &ev, 1, -1);

            if (n == -1 && errno == EINTR)
                continue;
            if (n == -1)
                die("epoll_wait");
            wakeups++;
            if (sfd != -1) {
                if (read(sfd, &fi, sizeof(fi)) != sizeof(fi))
                    continue;   /* flushed meanwhile */
                if (fi.ssi_signo == (uint32_t) SIGIO) {
                    fallbacks++;
                    flushRt();
                }
            }
            drain(srcFd, 0);
        }
    } else {
        while (!done) {
            wakeups++;
            drain(srcFd, 1);
        }
    }
}

static void writer(int fd, long n, long burst)
{
    struct rec r = { 0, 0, 0 };
    struct timespec gap = { 0, 1000000 };

    for (long i = 1; i <= n; i++) {
        r.seq = i;
        r.time_ns = now();
        if (write(fd, &r, sizeof(r)) != sizeof(r))
            die("write");
        if (i % burst == 0)
            nanosleep(&gap, NULL);
    }
    _exit(0);
}

static unsigned long long cpuNs(const struct rusage *ru)
{
    return (ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1000000000ull
           + (ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) * 1000ull;
}

/* The signals still queued (blocked outside the handlers): taken and counted. */
static long leftQueued(void)
{
    struct timespec zero = { 0, 0 };
    sigset_t both;
    long n = 0;

    sigemptyset(&both);
    sigaddset(&both, SIGRTMIN);
    sigaddset(&both, SIGIO);
    sigprocmask(SIG_BLOCK, &both, NULL);
    while (sigtimedwait(&both, NULL, &zero) > 0)
        n++;
    return n;
}

static int cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

    return x < y ? -1 : x > y;
}

int main(int argc, char *argv[])
{
    int isPipe, pfd[2], sfd = -1, ep = -1;
    long burst = 0;
    pid_t child = 0;
    sigset_t set;
    struct sigaction sa;
    struct rusage ru0, ru;
    long left;

    if (argc < 3 || (strcmp(argv[2], "pipe") == 0 && argc != 5)) {
        fprintf(stderr, "Usage: %s MECH /dev/button | MECH pipe N BURST\n"
                "MECH: sigio setsig sigwait signalfd epoll read\n", argv[0]);
        exit(2);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    isPipe = strcmp(argv[2], "pipe") == 0;
    expect = isPipe ? atol(argv[3]) : 1L << 31;
    if (isPipe) {
        burst = atol(argv[4]);
        if (pipe(pfd) == -1)
            die("pipe");
        srcFd = pfd[0];
    } else {
        skip = 2;
        srcFd = open(argv[2], O_RDONLY);
        if (srcFd == -1)
            die(argv[2]);
    }
    setup(argv[1], &set, &sfd, &ep);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = onStop;     /* no SA_RESTART: it interrupts any wait (EINTR), and done */
    if (sigaction(SIGALRM, &sa, NULL) == -1 || sigaction(SIGTERM, &sa, NULL) == -1)
        die("sigaction SIGALRM, SIGTERM");
    alarm(30);
    if (isPipe) {
        child = fork();
        if (child == -1)
            die("fork");
        if (child == 0) {
            close(pfd[0]);
            writer(pfd[1], expect, burst);
        }
        close(pfd[1]);
    }
    getrusage(RUSAGE_SELF, &ru0);   /* the setup's CPU time is not the events' */
    printf("ready\n");
    run(argv[1], &set, sfd, ep);
    if (child > 0)
        waitpid(child, NULL, 0);
    if (timedOut) {
        printf("timeout mech=%s base=%u next=%u final=%u events=%ld wakeups=%ld\n", argv[1], base, nextSeq,
               finalSeq, nLat, wakeups);
        return 1;
    }
    getrusage(RUSAGE_SELF, &ru);
    left = leftQueued();
    qsort(lat, nLat, sizeof(lat[0]), cmp);
    printf("result mech=%s events=%ld lost=%ld wakeups=%ld span_ns=%llu p50_ns=%llu p99_ns=%llu cpu_ns=%llu "
           "fallbacks=%ld left=%ld\n",
           argv[1], nLat, lost, wakeups, (unsigned long long) (lastRecv - firstTime),
           (unsigned long long) (nLat ? lat[nLat / 2] : 0),
           (unsigned long long) (nLat ? lat[(nLat * 99) / 100 < nLat ? (nLat * 99) / 100 : nLat - 1] : 0),
           (unsigned long long) (cpuNs(&ru) - cpuNs(&ru0)), fallbacks, left);
    return 0;
}
