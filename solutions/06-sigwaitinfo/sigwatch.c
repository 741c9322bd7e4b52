/* sigwatch.c

   Lab 5's rtwatch without a single signal handler: the signals are
   blocked from the start, and main takes them one at a time with
   sigwaitinfo(), as ordinary data.  Between two waits the program is
   ordinary code: stdio, malloc and locks are fine again.

   The sources and the output are rtwatch's: a FIFO of notes and one or
   more button devices, each with F_SETOWN, F_SETSIG SIGRTMIN and O_ASYNC,
   and for every queued SIGRTMIN

       signal 3: fd 4 POLL_IN band 0x41 (/dev/button)
       /dev/button: seq 7 pressed             (the source read until EAGAIN)

   A plain SIGIO means the realtime queue overflowed: the stale queued
   signals are flushed (sigtimedwait() with a zero timeout), then every
   source is read ("SIGIO: ... flushed N queued signals", "resynchronised").
   SIGUSR1 holds the sources' signals (sigwatch stops waiting for them:
   they queue) and takes them again ("holding", "taking").  SIGINT or
   SIGTERM ends the loop and prints the counts, and how the signal was
   sent ("sigwatch: SIGTERM (SI_USER): 12 signals, 1 overflows"); status 0.

   -t MS   wait with sigtimedwait(): after MS ms with no signal, say
           "timeout: no signal in MS ms" and wait again
   -T      wait in a thread of its own, and have the kernel send the
           files' signals to that thread (F_SETOWN_EX, F_OWNER_TID); the
           first thread only joins it
   -s      wait with signalfd(2) and epoll(7) instead of sigwaitinfo()

   Usage: sigwatch [-t MS] [-T] [-s] FIFO DEVICE...
*/
#define _GNU_SOURCE             /* F_SETSIG, F_SETOWN_EX, gettid(): before any #include */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "button_event.h"

#define MAX_SOURCES 8
#define BATCH 16                /* records per read(2) */

struct source {
    const char *name;           /* as given: "notes", "/dev/button" */
    int fd;                     /* -1 once closed */
    int isFifo;
    uint32_t lastSeq;           /* a device: the last seq read; 0: none yet */
    char text[256];             /* a FIFO: a line not finished yet */
    size_t textLen;
};

/* What a wait returned: the signal and the part of its siginfo we use. */
struct sig {
    int signo;
    int code;                   /* si_code: POLL_IN..., SI_USER, SI_TKILL... */
    int fd;                     /* si_fd (SIGRTMIN, SIGIO from a file) */
    long band;                  /* si_band */
};

static struct source sources[MAX_SOURCES];
static int nSources;
static int timeoutMs = -1;      /* -t: < 0, no timeout */
static int useSignalfd;         /* -s */
static int threaded;            /* -T */
static sigset_t watched;        /* every signal sigwatch takes */
static sigset_t heldSet;        /* the same without the sources' signals */

static long handled;            /* realtime signals dispatched */
static long overflows;          /* resynchronisations */

static void
die(const char *what)
{
    perror(what);
    exit(EXIT_FAILURE);
}

static const char *
codeName(int code, int signo)
{
    if (signo == SIGRTMIN || signo == SIGIO) {
        switch (code) {
        case POLL_IN:  return "POLL_IN";
        case POLL_OUT: return "POLL_OUT";
        case POLL_MSG: return "POLL_MSG";
        case POLL_ERR: return "POLL_ERR";
        case POLL_PRI: return "POLL_PRI";
        case POLL_HUP: return "POLL_HUP";
        }
    }
    switch (code) {
    case SI_USER:   return "SI_USER";
    case SI_KERNEL: return "SI_KERNEL";
    case SI_QUEUE:  return "SI_QUEUE";
    case SI_TKILL:  return "SI_TKILL";
    default:        return "code?";
    }
}

/* --- the sources (rtwatch's) ---------------------------------------------- */

static struct source *
sourceByFd(int fd)
{
    for (int i = 0; i < nSources; i++)
        if (sources[i].fd == fd && fd != -1)
            return &sources[i];
    return NULL;
}

/* The device is gone (POLL_HUP, or ENODEV): stop watching it. */
static void
hangup(struct source *s)
{
    printf("%s: hangup\n", s->name);
    if (close(s->fd) == -1)
        die("close");
    s->fd = -1;
}

/* One record of a device, and what the ring overwrote before it. */
static void
record(struct source *s, const struct button_event *ev)
{
    if (s->lastSeq != 0 && ev->seq != s->lastSeq + 1)
        printf("%s: lost %u: seq %u to %u\n", s->name, ev->seq - s->lastSeq - 1,
               s->lastSeq + 1, ev->seq - 1);
    s->lastSeq = ev->seq;
    printf("%s: seq %u %s\n", s->name, ev->seq, ev->pressed ? "pressed" : "released");
}

/* Bytes of a FIFO: print each whole line. */
static void
text(struct source *s, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\n' || s->textLen == sizeof(s->text) - 1) {
            printf("%s: %.*s\n", s->name, (int) s->textLen, s->text);
            s->textLen = 0;
        }
        if (buf[i] != '\n')
            s->text[s->textLen++] = buf[i];
    }
}

/* Read the source until EAGAIN (every file is O_NONBLOCK). */
static void
drain(struct source *s)
{
    struct button_event ev[BATCH];
    ssize_t n;

    while (s->fd != -1) {
        n = read(s->fd, ev, sizeof(ev));
        if (n > 0 && s->isFifo) {
            text(s, (const char *) ev, n);
        } else if (n > 0) {
            for (ssize_t i = 0; i < n / (ssize_t) sizeof(ev[0]); i++)
                record(s, &ev[i]);
        } else if (n == 0) {
            printf("%s: end of file\n", s->name);   /* a FIFO's last writer closed it */
            return;
        } else if (errno == EAGAIN || errno == EINTR) {
            return;
        } else if (errno == ENODEV) {
            hangup(s);
        } else {
            die("read");
        }
    }
}

/* Open a source, and ask for a queued SIGRTMIN per event, sent to this
   thread (-T) or to the process. */
static void
watch(struct source *s, const char *path, int isFifo)
{
    int flags;

    s->name = path;
    s->isFifo = isFifo;
    s->fd = open(path, O_RDONLY | O_NONBLOCK);
    if (s->fd == -1)
        die(path);
    if (threaded) {
        /* TODO 5: with -T, direct the file's signals to this thread (the
           one that waits for them): F_SETOWN_EX with F_OWNER_TID and
           gettid().  A signal sent to one thread is pending for it alone:
           only that thread can take it. */
        struct f_owner_ex owner = { .type = F_OWNER_TID, .pid = gettid() };

        if (fcntl(s->fd, F_SETOWN_EX, &owner) == -1)
            die("fcntl F_SETOWN_EX");
        //> if (fcntl(s->fd, F_SETOWN, getpid()) == -1)
        //>     die("fcntl F_SETOWN");
        /* END TODO */
    } else if (fcntl(s->fd, F_SETOWN, getpid()) == -1) {
        die("fcntl F_SETOWN");
    }
    if (fcntl(s->fd, F_SETSIG, SIGRTMIN) == -1)
        die("fcntl F_SETSIG");
    flags = fcntl(s->fd, F_GETFL);
    if (flags == -1 || fcntl(s->fd, F_SETFL, flags | O_ASYNC) == -1)
        die("fcntl F_SETFL O_ASYNC");
}

/* One queued SIGRTMIN: which source (si_fd), what happened (si_code). */
static void
dispatch(const struct sig *sg)
{
    struct source *s = sourceByFd(sg->fd);

    handled++;
    printf("signal %ld: fd %d %s band %#lx", handled, sg->fd, codeName(sg->code, sg->signo), sg->band);
    if (s == NULL) {
        printf(" (not watched)\n");
        return;
    }
    printf(" (%s)\n", s->name);
    if (sg->code == POLL_HUP)
        hangup(s);
    else
        drain(s);
}

/* The queue overflowed: flush the stale queued signals, then read
   everything there is (flush first: an event whose signal the flush takes
   is read all the same). */
static void
resync(void)
{
    struct pollfd pfd[MAX_SOURCES];
    int flushed = 0;

    /* TODO 4: flush the queued SIGRTMIN: sigtimedwait() with a zero
       timeout until it fails with EAGAIN; count them.  (SIGRTMIN is
       blocked, as sigtimedwait() wants: it always is, in sigwatch.) */
    struct timespec zero = { 0, 0 };
    sigset_t rt;

    sigemptyset(&rt);
    sigaddset(&rt, SIGRTMIN);
    while (sigtimedwait(&rt, NULL, &zero) != -1)
        flushed++;
    if (errno != EAGAIN)
        die("sigtimedwait");
    /* END TODO */
    printf("SIGIO: the signal queue overflowed; flushed %d queued signals\n", flushed);

    for (int i = 0; i < nSources; i++) {
        pfd[i].fd = sources[i].fd;      /* poll(2) skips -1 */
        pfd[i].events = POLLIN;
        pfd[i].revents = 0;
    }
    if (poll(pfd, nSources, 0) == -1)
        die("poll");
    for (int i = 0; i < nSources; i++)
        if (pfd[i].revents != 0)
            drain(&sources[i]);
    printf("resynchronised\n");
}

/* --- waiting ---------------------------------------------------------------- */

/* The next signal of `set`, with sigwaitinfo(), or with sigtimedwait() when
   there is a timeout.  1: a signal, in *sg; 0: the timeout passed; -1: the
   wait was interrupted (EINTR): wait again. */
static int
waitInfo(const sigset_t *set, struct sig *sg)
{
    /* TODO 2: take the next signal of `set`: sigwaitinfo(), or
       sigtimedwait() with timeoutMs when it is >= 0.  Copy si_signo,
       si_code, si_fd and si_band into *sg and return 1; return 0 for the
       timeout (EAGAIN) and -1 for EINTR (a stop and a SIGCONT interrupt
       the wait, handler or not); anything else is an error. */
    struct timespec ts = { timeoutMs / 1000, (timeoutMs % 1000) * 1000000L };
    siginfo_t si;
    int sig;

    sig = timeoutMs < 0 ? sigwaitinfo(set, &si) : sigtimedwait(set, &si, &ts);
    if (sig == -1 && errno == EAGAIN)
        return 0;
    if (sig == -1 && errno == EINTR)
        return -1;
    if (sig == -1)
        die("sigwaitinfo");
    sg->signo = sig;
    sg->code = si.si_code;
    sg->fd = si.si_fd;
    sg->band = si.si_band;
    return 1;
    //> (void)set;
    //> (void)sg;
    //> pause();                /* a stand-in: it waits for a handler */
    //> errno = EINTR;
    //> return -1;
    /* END TODO */
}

/* The same with a signalfd(2) in an epoll(7) set: the signals become data
   read from a file, and the epoll set could hold the sources too. */
static int
waitSignalfd(const sigset_t *set, struct sig *sg)
{
    /* TODO 6: once, make a signalfd for `set` and an epoll instance
       watching it for EPOLLIN; when `set` changes (holding, taking), give
       the signalfd the new mask (signalfd() with its fd).  Then
       epoll_wait() with timeoutMs (-1: none): 0 ready is the timeout,
       EINTR is -1 as in waitInfo(); read one struct signalfd_siginfo
       and copy ssi_signo, ssi_code, ssi_fd and ssi_band into *sg. */
    static int sfd = -1, epfd = -1;
    static sigset_t current;
    struct signalfd_siginfo fi;
    struct epoll_event ev;
    int n;

    if (sfd == -1 || memcmp(&current, set, sizeof(current)) != 0) {
        sfd = signalfd(sfd, set, SFD_NONBLOCK | SFD_CLOEXEC);
        if (sfd == -1)
            die("signalfd");
        current = *set;
    }
    if (epfd == -1) {
        epfd = epoll_create1(EPOLL_CLOEXEC);
        ev.events = EPOLLIN;
        ev.data.fd = sfd;
        if (epfd == -1 || epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev) == -1)
            die("epoll");
    }
    n = epoll_wait(epfd, &ev, 1, timeoutMs);
    if (n == -1 && errno == EINTR)
        return -1;
    if (n == -1)
        die("epoll_wait");
    if (n == 0)
        return 0;
    if (read(sfd, &fi, sizeof(fi)) != sizeof(fi)) {
        if (errno == EAGAIN)    /* taken meanwhile (by the resync's flush) */
            return -1;
        die("read signalfd");
    }
    sg->signo = fi.ssi_signo;
    sg->code = fi.ssi_code;
    sg->fd = fi.ssi_fd;
    sg->band = fi.ssi_band;
    return 1;
    //> (void)set;
    //> (void)sg;
    //> pause();
    //> errno = EINTR;
    //> return -1;
    /* END TODO */
}

/* The loop: take a signal, act on it; no handler anywhere. */
static void *
loop(void *arg)
{
    char **paths = arg;
    int held = 0, stopSig = 0, stopCode = 0, r;
    struct sig sg;

    watch(&sources[nSources++], paths[0], 1);
    for (int i = 1; paths[i] != NULL; i++)
        watch(&sources[nSources++], paths[i], 0);
    printf("ready:");
    for (int i = 0; i < nSources; i++)
        printf(" fd %d %s%s", sources[i].fd, sources[i].name, i + 1 < nSources ? "," : "\n");

    while (!stopSig) {
        memset(&sg, 0, sizeof(sg));
        r = useSignalfd ? waitSignalfd(held ? &heldSet : &watched, &sg)
                        : waitInfo(held ? &heldSet : &watched, &sg);
        if (r == -1)
            continue;           /* interrupted: wait again */
        /* TODO 3: act on what came.  0 (timeout): print "timeout: no
           signal in MS ms".  SIGRTMIN: dispatch(); SIGIO: count an
           overflow, resync(); SIGUSR1: hold or take ("holding",
           "taking"); SIGINT or SIGTERM: remember which and its si_code,
           and leave the loop. */
        if (r == 0) {
            printf("timeout: no signal in %d ms\n", timeoutMs);
        } else if (sg.signo == SIGRTMIN) {
            dispatch(&sg);
        } else if (sg.signo == SIGIO) {
            overflows++;
            resync();
        } else if (sg.signo == SIGUSR1) {
            held = !held;
            printf("%s\n", held ? "holding" : "taking");
        } else if (sg.signo == SIGINT || sg.signo == SIGTERM) {
            stopSig = sg.signo;
            stopCode = sg.code;
        }
        //> (void)dispatch;
        //> (void)resync;
        //> (void)stopCode;
        /* END TODO */
    }
    printf("sigwatch: %s (%s): %ld signals, %ld overflows\n",
           stopSig == SIGINT ? "SIGINT" : "SIGTERM", codeName(stopCode, stopSig), handled, overflows);
    return NULL;
}

int
main(int argc, char *argv[])
{
    pthread_t waiter;
    int opt, err;

    while ((opt = getopt(argc, argv, "t:Ts")) != -1) {
        switch (opt) {
        case 't': timeoutMs = atoi(optarg); break;
        case 'T': threaded = 1; break;
        case 's': useSignalfd = 1; break;
        default: argc = 0; break;
        }
    }
    if (argc - optind < 2 || argc - optind > MAX_SOURCES) {
        fprintf(stderr, "Usage: %s [-t MS] [-T] [-s] FIFO DEVICE...\n"
                "Lab 5's rtwatch with no handler: every signal blocked, taken with\n"
                "sigwaitinfo() (-t MS: sigtimedwait(), a line after MS ms with none; -s:\n"
                "signalfd and epoll; -T: in a thread of its own, which the files' signals\n"
                "are sent to).  SIGUSR1 holds or takes the sources' signals; SIGINT or\n"
                "SIGTERM prints the counts and ends it.\n", argv[0]);
        exit(EXIT_FAILURE);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);   /* the lines as they come (stdout may be a file) */

    sigemptyset(&watched);
    sigaddset(&watched, SIGRTMIN);
    sigaddset(&watched, SIGIO);
    sigaddset(&watched, SIGUSR1);
    sigaddset(&watched, SIGINT);
    sigaddset(&watched, SIGTERM);
    heldSet = watched;
    sigdelset(&heldSet, SIGRTMIN);
    sigdelset(&heldSet, SIGIO);

    /* TODO 1: block every signal of `watched`, now, before any thread
       exists (a new thread inherits its creator's mask) and before any
       O_ASYNC: a signal is then pending until a wait takes it, and a
       signal left unblocked would run its default action (terminate).
       pthread_sigmask(), not sigprocmask(): this program has threads. */
    err = pthread_sigmask(SIG_BLOCK, &watched, NULL);
    if (err != 0) {
        errno = err;
        die("pthread_sigmask");
    }
    //> (void)err;
    /* END TODO */

    if (mkfifo(argv[optind], 0622) == -1 && errno != EEXIST)
        die(argv[optind]);

    if (!threaded) {
        loop(&argv[optind]);
        exit(EXIT_SUCCESS);
    }
    /* TODO 5: -T: run loop() in a thread of its own (it opens the sources,
       so that their signals go to it), and join it. */
    err = pthread_create(&waiter, NULL, loop, &argv[optind]);
    if (err != 0) {
        errno = err;
        die("pthread_create");
    }
    err = pthread_join(waiter, NULL);
    if (err != 0) {
        errno = err;
        die("pthread_join");
    }
    //> (void)waiter;
    //> loop(&argv[optind]);
    /* END TODO */
    exit(EXIT_SUCCESS);
}
