/* rtwatch.c

   Watch several sources with one signal handler: each source's events
   come as queued realtime signals whose siginfo says which file (si_fd)
   and what happened (si_code, si_band).

   The sources: a FIFO of notes (text lines another process writes) and
   one or more button devices (/dev/button, /dev/switch1, ...).  Each open
   file gets F_SETOWN, F_SETSIG SIGRTMIN and O_ASYNC, so every event sends
   one SIGRTMIN of its own.  For every one of them main prints

       signal 3: fd 4 POLL_IN band 0x41 (/dev/button)

   and then reads that source until EAGAIN:

       /dev/button: seq 7 pressed
       /dev/button: lost 36: seq 8 to 43      (overwritten in the ring)
       notes: hello                           (a line of the FIFO)
       notes: end of file                     (its last writer closed it)
       /dev/button: hangup                    (POLL_HUP: the device went
                                               away; the file is closed)

   The handler does no work: it records (fd, code, band) in an inbox that
   main empties.  Every signal we handle is blocked except while main
   waits in sigsuspend(), and each handler blocks the others, so handler
   and main never run at the same time.

   The realtime queue is finite (RLIMIT_SIGPENDING, per real user).  When
   it is full, the kernel sends a plain SIGIO instead.  rtwatch takes that
   as "resynchronise": it throws the stale queued signals away, then reads
   every source that poll(2) says has something, and loses no event:

       SIGIO: the signal queue overflowed; flushed 8 queued signals
       ...                                    (what the sources had)
       resynchronised

   SIGUSR1 holds the realtime signals and SIGIO (blocks them: they queue),
   the next SIGUSR1 takes them again ("holding", "taking").  SIGINT or
   SIGTERM ends it with the counts ("rtwatch: SIGTERM: 12 signals, 1
   overflows") and status 0.

   Usage: rtwatch FIFO DEVICE...          (the FIFO is made if it is not there)
*/
#define _GNU_SOURCE             /* F_SETSIG, before any #include */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "button_event.h"

#define MAX_SOURCES 8
#define INBOX 16                /* signals recorded by handlers, not yet seen by main */
#define BATCH 16                /* records per read(2) */

struct source {
    const char *name;           /* as given: "notes", "/dev/button" */
    int fd;                     /* -1 once closed */
    int isFifo;
    uint32_t lastSeq;           /* a device: the last seq read; 0: none yet */
    char text[256];             /* a FIFO: a line not finished yet */
    size_t textLen;
};

static struct source sources[MAX_SOURCES];
static int nSources;

/* The inbox: what the handler saw, for main.  Written only by the handler
   (which never runs while main reads it), read and emptied by main. */
static volatile sig_atomic_t inboxFd[INBOX];
static volatile sig_atomic_t inboxCode[INBOX];
static volatile sig_atomic_t inboxBand[INBOX];
static volatile sig_atomic_t inboxCount;
static volatile sig_atomic_t overflowed;        /* SIGIO came, or the inbox was full */

static volatile sig_atomic_t stopSig;
static volatile sig_atomic_t toggleHold;

static long handled;            /* realtime signals main dispatched */
static long overflows;          /* resynchronisations */

static void
die(const char *what)
{
    perror(what);
    exit(EXIT_FAILURE);
}

static const char *
codeName(int code)
{
    switch (code) {
    case POLL_IN:  return "POLL_IN";
    case POLL_OUT: return "POLL_OUT";
    case POLL_MSG: return "POLL_MSG";
    case POLL_ERR: return "POLL_ERR";
    case POLL_PRI: return "POLL_PRI";
    case POLL_HUP: return "POLL_HUP";
    default:       return "code?";
    }
}

/* --- the sources ------------------------------------------------------ */

static struct source *
sourceByFd(int fd)
{
    for (int i = 0; i < nSources; i++)
        if (sources[i].fd == fd && fd != -1)
            return &sources[i];
    return NULL;
}

/* The device is gone (POLL_HUP, or read(2) failed with ENODEV): stop
   watching it.  Closing drops our reference on the driver's state. */
static void
hangup(struct source *s)
{
    printf("%s: hangup\n", s->name);
    if (close(s->fd) == -1)
        die("close");
    s->fd = -1;
}

/* One record of a device: print it, and name what the ring overwrote
   before it (a jump in seq). */
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
            /* A FIFO with no writer left: end of file, until one opens
               it again (we keep it open, and its next write signals). */
            printf("%s: end of file\n", s->name);
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

/* Open a source, and ask for a queued SIGRTMIN per event. */
static void
watch(struct source *s, const char *path, int isFifo)
{
    int flags;

    s->name = path;
    s->isFifo = isFifo;
    /* O_NONBLOCK: reads stop at EAGAIN, and a FIFO opens without a writer. */
    s->fd = open(path, O_RDONLY | O_NONBLOCK);
    if (s->fd == -1)
        die(path);
    if (fcntl(s->fd, F_SETOWN, getpid()) == -1)
        die("fcntl F_SETOWN");
    /* TODO 1: choose SIGRTMIN as the file's signal (F_SETSIG), before
       O_ASYNC turns the signals on: from then on each event queues one
       SIGRTMIN with a siginfo_t of its own. */
    flags = fcntl(s->fd, F_GETFL);
    if (flags == -1 || fcntl(s->fd, F_SETFL, flags | O_ASYNC) == -1)
        die("fcntl F_SETFL O_ASYNC");
}

/* --- the handlers ------------------------------------------------------- */

/* SIGRTMIN and SIGIO: record what the kernel said, nothing else.  (No
   "case SIGRTMIN:": SIGRTMIN is not a constant in glibc.) */
static void
onSignal(int sig, siginfo_t *si, void *ucontext)
{
    (void) ucontext;
    /* TODO 2: SIGIO means the realtime queue overflowed: set overflowed.
       SIGRTMIN: record si_fd, si_code and si_band in the inbox (a full
       inbox counts as an overflow). */
    (void)sig;
    (void)si;
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

/* --- main's work -------------------------------------------------------- */

/* One signal from the inbox: which source (si_fd), what happened (si_code). */
static void
dispatch(int fd, int code, long band)
{
    handled++;
    printf("signal %ld: fd %d %s band %#lx", handled, fd, codeName(code), band);
    /* TODO 3: find the source by its fd; say which it is, " (NAME)", and
       act on the code: POLL_IN, read it until EAGAIN (drain()); POLL_HUP,
       it is gone (hangup()).  A signal for a file already closed (a
       hangup went first) is only reported. */
    (void)sourceByFd;
    (void)drain;
    printf("\n");
}

/* The queue overflowed: some events have no signal.  Throw the stale
   queued signals away first, then read everything there is, so that an
   event whose signal was thrown away is read all the same. */
static void
resync(void)
{
    /* TODO 4: flush the queued SIGRTMIN (sigtimedwait() with a zero
       timeout, until it fails with EAGAIN) and say how many; then poll(2)
       every open source with no wait, and drain() each one that reports
       anything (drain() handles EOF and ENODEV too); then say
       "resynchronised". */
}

int
main(int argc, char *argv[])
{
    sigset_t handledSigs, origMask, heldMask;
    struct sigaction sa;
    int held = 0;

    if (argc < 3 || argc - 1 > MAX_SOURCES || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "Usage: %s FIFO DEVICE...\n"
                "One queued SIGRTMIN per event of each source (F_SETSIG); a line per\n"
                "signal and per record read.  SIGUSR1 holds the signals, SIGUSR1 again\n"
                "takes them; SIGINT or SIGTERM prints the counts and ends it.\n", argv[0]);
        exit(argc >= 2 && strcmp(argv[1], "--help") == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);   /* the lines as they come (stdout may be a file) */

    /* Every signal we handle stays blocked except inside sigsuspend():
       the handlers never interrupt main, so main may use stdio. */
    sigemptyset(&handledSigs);
    sigaddset(&handledSigs, SIGRTMIN);
    sigaddset(&handledSigs, SIGIO);
    sigaddset(&handledSigs, SIGUSR1);
    sigaddset(&handledSigs, SIGINT);
    sigaddset(&handledSigs, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &handledSigs, &origMask) == -1)
        die("sigprocmask");
    heldMask = origMask;
    sigaddset(&heldMask, SIGRTMIN);
    sigaddset(&heldMask, SIGIO);

    memset(&sa, 0, sizeof(sa));
    sa.sa_mask = handledSigs;           /* no handler interrupts another */
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = holdHandler;
    if (sigaction(SIGUSR1, &sa, NULL) == -1)
        die("sigaction SIGUSR1");
    sa.sa_handler = stopHandler;
    if (sigaction(SIGINT, &sa, NULL) == -1 || sigaction(SIGTERM, &sa, NULL) == -1)
        die("sigaction SIGINT/SIGTERM");
    /* TODO 1: one handler, onSignal(), for SIGRTMIN and SIGIO, with
       SA_SIGINFO (the siginfo_t is the point), before any O_ASYNC. */
    (void)onSignal;

    if (mkfifo(argv[1], 0622) == -1 && errno != EEXIST)
        die(argv[1]);
    watch(&sources[nSources++], argv[1], 1);
    for (int i = 2; i < argc; i++)
        watch(&sources[nSources++], argv[i], 0);

    printf("ready:");
    for (int i = 0; i < nSources; i++)
        printf(" fd %d %s%s", sources[i].fd, sources[i].name, i + 1 < nSources ? "," : "\n");

    while (!stopSig) {
        sigsuspend(held ? &heldMask : &origMask);   /* returns after a handler */
        if (toggleHold) {
            toggleHold = 0;
            held = !held;
            printf("%s\n", held ? "holding" : "taking");
        }
        /* Every handled signal is blocked here: the inbox stays still. */
        for (int i = 0; i < inboxCount; i++)
            dispatch(inboxFd[i], inboxCode[i], inboxBand[i]);
        inboxCount = 0;
        if (overflowed) {
            overflowed = 0;
            overflows++;
            resync();
        }
    }

    printf("rtwatch: %s: %ld signals, %ld overflows\n",
           stopSig == SIGINT ? "SIGINT" : "SIGTERM", handled, overflows);
    exit(EXIT_SUCCESS);
}
