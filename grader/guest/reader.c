/* reader.c - the grader's reader of /dev/button, for labs 4 to 6.

   It uses the device the way the chapters describe, so a test can tell the
   driver's part from the student's program.

   reader hold [-a]   open /dev/button (O_NONBLOCK; with -a also F_SETOWN and
                      O_ASYNC, and a SIGIO handler that only counts), print
                      "open", wait for SIGUSR1, then read everything:
                          rec SEQ PRESSED TIME_NS     one line per record
                          drained N
                          sigio N                     (with -a) deliveries
   reader count       the correct reader: F_SETOWN, O_ASYNC, and a SIGIO
                      handler that reads until EAGAIN; print "ready", and at
                      SIGUSR1 read what is left, print and exit:
                          deliveries D records R lost L
                      (R: records read, by the handler or at the end; lost:
                      seq numbers skipped, the ring overwrote them)

   Build: gcc -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -o reader reader.c
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct button_event {
    uint64_t time_ns;
    uint32_t seq;
    uint32_t pressed;
};

#define DEV "/dev/button"
#define BATCH 64

static int fd = -1;
static volatile sig_atomic_t deliveries, records, lost, gotUsr1;
static uint32_t lastSeq;

static void __attribute__((noreturn))
fail(const char *what)
{
    printf("%s-error %s\n", what, strerror(errno));
    exit(2);
}

static void
onUsr1(int sig)
{
    (void) sig;
    gotUsr1 = 1;
}

static void
onSigioCount(int sig)
{
    (void) sig;
    deliveries++;
}

/* The correct reader: every record, until EAGAIN; gaps in seq are lost. */
static void
drainAll(void)
{
    struct button_event ev[BATCH];
    int saved = errno;
    ssize_t n;

    while ((n = read(fd, ev, sizeof(ev))) > 0) {
        for (ssize_t i = 0; i < n / (ssize_t) sizeof(ev[0]); i++) {
            if (lastSeq != 0 && ev[i].seq != lastSeq + 1)
                lost += ev[i].seq - lastSeq - 1;
            lastSeq = ev[i].seq;
            records++;
        }
    }
    errno = saved;
}

static void
onSigioDrain(int sig)
{
    (void) sig;
    deliveries++;
    drainAll();
}

static void
handle(int sig, void (*fn)(int))
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = fn;
    sa.sa_flags = SA_RESTART;
    if (sigaction(sig, &sa, NULL) == -1)
        fail("sigaction");
}

static void
async(void)
{
    int fl;

    if (fcntl(fd, F_SETOWN, getpid()) == -1)
        fail("setown");
    fl = fcntl(fd, F_GETFL);
    if (fl == -1 || fcntl(fd, F_SETFL, fl | O_ASYNC) == -1)
        fail("setfl");
}

int
main(int argc, char *argv[])
{
    const char *mode = argc > 1 ? argv[1] : "";
    int withAsync = argc > 2 && strcmp(argv[2], "-a") == 0;
    sigset_t block, wait;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(mode, "hold") != 0 && strcmp(mode, "count") != 0) {
        fprintf(stderr, "usage: reader hold [-a] | reader count\n");
        return 2;
    }
    /* SIGUSR1 and SIGIO are taken only inside sigsuspend(). */
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGIO);
    if (sigprocmask(SIG_BLOCK, &block, &wait) == -1)
        fail("sigprocmask");
    handle(SIGUSR1, onUsr1);
    fd = open(DEV, O_RDONLY | O_NONBLOCK);
    if (fd == -1)
        fail("open");

    if (strcmp(mode, "count") == 0) {
        handle(SIGIO, onSigioDrain);
        async();
        printf("ready\n");
        while (!gotUsr1)
            sigsuspend(&wait);
        drainAll();             /* SIGIO is blocked again: what is left */
        printf("deliveries %d records %d lost %d\n", (int) deliveries, (int) records, (int) lost);
        return 0;
    }

    if (withAsync) {
        handle(SIGIO, onSigioCount);
        async();
    }
    printf("open\n");
    while (!gotUsr1)
        sigsuspend(&wait);
    {
        struct button_event ev[BATCH];
        long total = 0;
        ssize_t n;

        while ((n = read(fd, ev, sizeof(ev))) > 0) {
            for (ssize_t i = 0; i < n / (ssize_t) sizeof(ev[0]); i++)
                printf("rec %u %u %llu\n", ev[i].seq, ev[i].pressed, (unsigned long long) ev[i].time_ns);
            total += n / (ssize_t) sizeof(ev[0]);
        }
        if (n == -1 && errno != EAGAIN)
            printf("read-error %s\n", strerror(errno));
        printf("drained %ld\n", total);
    }
    if (withAsync)
        printf("sigio %d\n", (int) deliveries);
    return 0;
}
