/* agent.c - the guest side of the workbook VM's command channel.

   /init starts this program on the second serial port (/dev/ttyS1). It puts
   the port in raw mode and serves requests from the host (vm/machine.py)
   one at a time, until the host asks it to power the VM off.

   Every message, in both directions, is a frame:

       'W' 'B' type:u8 flags:u8 length:u32le  payload[length]

   Host -> agent:
       'P' ping      payload echoed back in a 'p' frame
       'R' run       timeout_ms:u32le cap:u32le command   (timeout 0: none)
       'W' write     mode:u32le path_len:u32le path data   -> 'K' err:i32le text
       'Q' poweroff  sync() and reboot(RB_POWER_OFF); no reply
   Agent -> host:
       'Y' ready     sent once the port is raw: "workbook-agent <version>"
       'O' / 'E'     a chunk of the command's stdout / stderr (at most cap
                     bytes of each stream are sent; the rest is drained)
       'X' exit      how:u8 flags:u8 0:u16 value:i32le
                     how: 0 exited (value = status), 1 killed (value = signal),
                     2 could not start (value = errno), 3 unkillable after
                     the timeout (value = 0); flags: 1 timed out,
                     2 stdout truncated, 4 stderr truncated

   A command runs as `/bin/sh -c command` in a new process group, with stdin
   from /dev/null and stdout/stderr on two pipes. The agent polls both pipes
   and a pidfd of the shell, so large outputs never deadlock. When the timeout
   expires the whole process group gets SIGKILL. The reply is sent when the
   shell itself has exited: the pipes are then drained of what is already
   there, not read to end-of-file, so `prog >/tmp/log 2>&1 &` or a background
   job still holding the pipes does not hold up the reply.

   Build: gcc -static -O2 -Wall -Wextra -Werror -o agent agent.c
   Usage: agent TTY
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define AGENT_VERSION   "1"
#define HDR_LEN         8
#define MAX_PAYLOAD     (256u << 20)    /* largest frame we accept */
#define CHUNK           4096            /* output chunk per frame */
#define KILL_GRACE_MS   2000            /* wait after SIGKILL before giving up */
#define DRAIN_READS     64              /* reads per pipe after the shell exited */

enum exit_how { HOW_EXITED, HOW_SIGNALED, HOW_NOSTART, HOW_UNKILLABLE };
enum exit_flags { F_TIMEDOUT = 1, F_OUT_TRUNC = 2, F_ERR_TRUNC = 4 };

static int tty = -1;                    /* the serial port */
static const char *prog = "agent";

/* Report an error on stderr (the VM's console) and exit. */
static void die(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", strerror(saved));
	exit(EXIT_FAILURE);
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void put_u32(unsigned char *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = (v >> 24) & 0xff;
}

/* Read exactly len bytes; returns 0, or -1 on end-of-file. Dies on errors. */
static int read_full(int fd, void *buf, size_t len)
{
	unsigned char *p = buf;

	while (len > 0) {
		ssize_t n = read(fd, p, len);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			die("read");
		}
		if (n == 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static void write_full(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			die("write");
		}
		p += n;
		len -= n;
	}
}

static void send_frame(char type, const void *payload, size_t len)
{
	unsigned char hdr[HDR_LEN] = { 'W', 'B', (unsigned char)type, 0 };

	put_u32(hdr + 4, len);
	write_full(tty, hdr, HDR_LEN);
	if (len > 0)
		write_full(tty, payload, len);
}

/* Read the next frame header, skipping any bytes that do not start one. */
static int read_header(unsigned char hdr[HDR_LEN])
{
	size_t have = 0;

	for (;;) {
		if (read_full(tty, hdr + have, HDR_LEN - have) == -1)
			return -1;
		if (hdr[0] == 'W' && hdr[1] == 'B' && strchr("PRWQ", hdr[2]) &&
		    hdr[2] != '\0' && get_u32(hdr + 4) <= MAX_PAYLOAD)
			return 0;
		memmove(hdr, hdr + 1, HDR_LEN - 1);
		have = HDR_LEN - 1;
	}
}

/* Raw 8-bit, no echo, no flow control, no output processing. */
static void setup_tty(const char *path)
{
	struct termios t;

	tty = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (tty == -1)
		die("open %s", path);
	if (tcgetattr(tty, &t) == -1)
		die("tcgetattr %s", path);
	cfmakeraw(&t);
	t.c_cflag &= ~CRTSCTS;
	t.c_cflag |= CLOCAL | CREAD;
	t.c_iflag &= ~(IXON | IXOFF | IXANY);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (cfsetspeed(&t, B115200) == -1)
		die("cfsetspeed");
	if (tcsetattr(tty, TCSANOW, &t) == -1)
		die("tcsetattr %s", path);
	if (tcflush(tty, TCIOFLUSH) == -1)
		die("tcflush %s", path);
}

static long long now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		die("clock_gettime");
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One output stream of the running command. */
struct stream {
	int fd;                 /* read end of the pipe, -1 once closed */
	char type;              /* 'O' or 'E' */
	size_t sent;            /* bytes forwarded to the host */
	size_t cap;
	int truncated;
};

/* Read once from the stream's pipe and forward what fits under the cap.
   Returns the number of bytes read, 0 at end-of-file or -1 on EAGAIN. */
static ssize_t pump(struct stream *s)
{
	static char buf[CHUNK];
	ssize_t n;

	n = read(s->fd, buf, sizeof(buf));
	if (n == -1) {
		if (errno == EAGAIN || errno == EINTR)
			return -1;
		die("read pipe");
	}
	if (n == 0) {
		if (close(s->fd) == -1)
			die("close pipe");
		s->fd = -1;
		return 0;
	}
	if (s->sent < s->cap) {
		size_t room = s->cap - s->sent;
		size_t len = (size_t)n < room ? (size_t)n : room;

		send_frame(s->type, buf, len);
		s->sent += len;
		if (len < (size_t)n)
			s->truncated = 1;
	} else {
		s->truncated = 1;
	}
	return n;
}

/* In the child: become a process group leader, wire the pipes, exec sh. */
static void child(const char *cmd, int out[2], int err[2])
{
	sigset_t none;
	int null;

	if (setpgid(0, 0) == -1)
		_exit(127);
	if (signal(SIGPIPE, SIG_DFL) == SIG_ERR || sigemptyset(&none) == -1 ||
	    sigprocmask(SIG_SETMASK, &none, NULL) == -1)
		_exit(127);
	null = open("/dev/null", O_RDONLY);
	if (null == -1 || dup2(null, STDIN_FILENO) == -1 ||
	    dup2(out[1], STDOUT_FILENO) == -1 ||
	    dup2(err[1], STDERR_FILENO) == -1)
		_exit(127);
	execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
	_exit(127);
}

static void send_exit(int how, int flags, int32_t value)
{
	unsigned char p[8] = { (unsigned char)how, (unsigned char)flags, 0, 0 };

	put_u32(p + 4, (uint32_t)value);
	send_frame('X', p, sizeof(p));
}

static void no_start(const char *what)
{
	int saved = errno;
	char msg[256];
	int len;

	len = snprintf(msg, sizeof(msg), "agent: %s: %s\n", what, strerror(saved));
	send_frame('E', msg, (size_t)len);
	send_exit(HOW_NOSTART, 0, saved);
}

static void run_command(const unsigned char *payload, size_t len)
{
	struct stream st[2] = {
		{ .fd = -1, .type = 'O' }, { .fd = -1, .type = 'E' },
	};
	int out[2], err[2], pidfd, timed_out = 0, flags, i;
	long long deadline = -1, kill_deadline = -1;
	uint32_t timeout_ms;
	siginfo_t si;
	char *cmd;
	pid_t pid;

	if (len < 8) {
		errno = EINVAL;
		no_start("short run request");
		return;
	}
	timeout_ms = get_u32(payload);
	st[0].cap = st[1].cap = get_u32(payload + 4);
	cmd = strndup((const char *)payload + 8, len - 8);
	if (cmd == NULL) {
		no_start("strndup");
		return;
	}
	if (pipe2(out, O_CLOEXEC) == -1) {
		no_start("pipe2");
		free(cmd);
		return;
	}
	if (pipe2(err, O_CLOEXEC) == -1) {
		no_start("pipe2");
		close(out[0]);
		close(out[1]);
		free(cmd);
		return;
	}
	pid = fork();
	if (pid == -1)
		die("fork");
	if (pid == 0)
		child(cmd, out, err);
	free(cmd);
	/* Also here, so the group exists before we might kill it. */
	if (setpgid(pid, pid) == -1 && errno != EACCES && errno != ESRCH)
		die("setpgid");
	if (close(out[1]) == -1 || close(err[1]) == -1)
		die("close");
	st[0].fd = out[0];
	st[1].fd = err[0];
	pidfd = pidfd_open(pid, 0);
	if (pidfd == -1)
		die("pidfd_open");
	if (timeout_ms > 0)
		deadline = now_ms() + timeout_ms;

	for (;;) {
		struct pollfd pfd[3];
		int nfds = 0, wait_ms = -1, ready;
		long long t = now_ms();

		if (kill_deadline >= 0) {
			wait_ms = kill_deadline > t ? (int)(kill_deadline - t) : 0;
		} else if (deadline >= 0) {
			wait_ms = deadline > t ? (int)(deadline - t) : 0;
		}
		pfd[nfds++] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
		for (i = 0; i < 2; i++)
			if (st[i].fd != -1)
				pfd[nfds++] = (struct pollfd){ .fd = st[i].fd,
							       .events = POLLIN };
		ready = poll(pfd, nfds, wait_ms);
		if (ready == -1) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (ready == 0) {
			if (kill_deadline >= 0)
				break;          /* killed but still there */
			/* The group may be gone already (a zombie leader). */
			if (kill(-pid, SIGKILL) == -1 && errno != ESRCH)
				die("kill");
			timed_out = 1;
			kill_deadline = now_ms() + KILL_GRACE_MS;
			continue;
		}
		if (pfd[0].revents & POLLIN)
			break;                  /* the shell has exited */
		for (i = 1; i < nfds; i++) {
			struct stream *s = pfd[i].fd == st[0].fd ? &st[0] : &st[1];

			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
				pump(s);
		}
	}

	/* Take what is already in the pipes, without waiting for writers. */
	for (i = 0; i < 2; i++) {
		int n;

		if (st[i].fd == -1)
			continue;
		if (fcntl(st[i].fd, F_SETFL, O_NONBLOCK) == -1)
			die("fcntl");
		for (n = 0; n < DRAIN_READS && st[i].fd != -1; n++)
			if (pump(&st[i]) == -1)
				break;
		if (st[i].fd != -1 && close(st[i].fd) == -1)
			die("close pipe");
	}

	flags = (timed_out ? F_TIMEDOUT : 0) |
		(st[0].truncated ? F_OUT_TRUNC : 0) |
		(st[1].truncated ? F_ERR_TRUNC : 0);
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, pidfd, &si, WEXITED | WNOHANG) == -1)
		die("waitid");
	if (close(pidfd) == -1)
		die("close pidfd");
	if (si.si_pid == 0)
		send_exit(HOW_UNKILLABLE, flags, 0);
	else if (si.si_code == CLD_EXITED)
		send_exit(HOW_EXITED, flags, si.si_status);
	else
		send_exit(HOW_SIGNALED, flags, si.si_status);
}

/* Write a file: the reply is 'K' with 0 or an errno, and a message. */
static void write_file(const unsigned char *payload, size_t len)
{
	unsigned char reply[4 + 300];
	const char *step = "open";
	uint32_t mode, plen;
	char path[PATH_MAX];
	size_t dlen;
	int fd, saved = 0, n;

	if (len < 8 || (plen = get_u32(payload + 4)) >= sizeof(path) ||
	    plen > len - 8 || plen == 0) {
		saved = EINVAL;
		snprintf(path, sizeof(path), "?");
		step = "bad request";
		goto reply;
	}
	mode = get_u32(payload) & 07777;
	memcpy(path, payload + 8, plen);
	path[plen] = '\0';
	dlen = len - 8 - plen;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd == -1) {
		saved = errno;
		goto reply;
	}
	{
		const unsigned char *p = payload + 8 + plen;

		while (dlen > 0) {
			ssize_t w = write(fd, p, dlen);

			if (w == -1 && errno == EINTR)
				continue;
			if (w == -1) {
				saved = errno;
				step = "write";
				break;
			}
			p += w;
			dlen -= w;
		}
	}
	if (saved == 0 && fchmod(fd, mode) == -1) {
		saved = errno;
		step = "chmod";
	}
	if (close(fd) == -1 && saved == 0) {
		saved = errno;
		step = "close";
	}
reply:
	put_u32(reply, (uint32_t)saved);
	n = 0;
	if (saved != 0)
		n = snprintf((char *)reply + 4, sizeof(reply) - 4, "%s %s: %s",
			     step, path, strerror(saved));
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(reply) - 5)
		n = sizeof(reply) - 5;
	send_frame('K', reply, 4 + (size_t)n);
}

static void power_off(void)
{
	sync();
	if (reboot(RB_POWER_OFF) == -1)
		die("reboot");
}

int main(int argc, char *argv[])
{
	unsigned char hdr[HDR_LEN];
	unsigned char *payload = NULL;
	size_t size = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s TTY\n", argv[0]);
		exit(EXIT_FAILURE);
	}
	prog = argv[0];
	/* A dead reader must not kill us; the children get SIGPIPE back. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		die("signal");
	setup_tty(argv[1]);
	send_frame('Y', "workbook-agent " AGENT_VERSION,
		   strlen("workbook-agent " AGENT_VERSION));

	while (read_header(hdr) == 0) {
		size_t len = get_u32(hdr + 4);

		if (len + 1 > size) {
			unsigned char *p = realloc(payload, len + 1);

			if (p == NULL)
				die("realloc %zu", len + 1);
			payload = p;
			size = len + 1;
		}
		if (read_full(tty, payload, len) == -1)
			break;
		switch (hdr[2]) {
		case 'P':
			send_frame('p', payload, len);
			break;
		case 'R':
			run_command(payload, len);
			break;
		case 'W':
			write_file(payload, len);
			break;
		case 'Q':
			power_off();
			break;
		}
	}
	fprintf(stderr, "%s: end of file on %s\n", prog, argv[1]);
	exit(EXIT_FAILURE);
}
