/* sandboxkit's launcher: starts the agent's exec'd programs (a compiler, a compiled
 * program, a shell command) as the agent's own children, by a fork of this small process
 * instead of the agent's Python.
 *
 * Why: a fork copies the forking process's page tables and makes its pages copy-on-write;
 * the child's exec then tears the copy down. From the agent (~12 MB of Python) that is
 * ~2 ms of CPU per program, both sides together, four fifths of a judge test's container
 * CPU; from this process (~1 MB) it is a few tens of microseconds. See _launch.py and
 * docs/fast-path.md.
 *
 *   launch PROGRAM_UID SUPERVISOR_UID      (descriptor 3: a SOCK_SEQPACKET to the agent)
 *
 * Started by the agent (PID 1) as uid 0 with the engine's capabilities, before the agent
 * separates itself (_privs.separate), it separates the same way at once: the bounding set
 * emptied, real and saved uid the supervisor's, effective uid the program's, and of the
 * capabilities CAP_SETUID and CAP_SETGID only (what the children's drop needs). So the
 * program cannot signal, trace nor read it, as it cannot the agent.
 *
 * Each message from the agent is one program: its stdin, stdout and stderr as three
 * descriptors (SCM_RIGHTS) and NUL-ended fields:
 *   cwd, N, N x (resource number, limit; -1: unlimited), ARGC, ARGC x arg, ENVC, ENVC x var
 * The answer is the child's pid (or minus an errno) as a native int, sent once the child
 * has exec'd (or failed). The child is made with CLONE_PARENT: it is the agent's child,
 * which waits for it, reads its usage and reaps it as any other. In it, before the exec:
 * the three descriptors as 0-2 and every other one closed, a new session, the program's
 * uid in all its uids with no group and no capability, the limits (each as soft and hard,
 * or the soft one at most the hard), the directory, then the exec, searching the job's
 * PATH as Python's os.execvpe does.
 *
 * The child shares this process's memory until its exec (CLONE_VM | CLONE_VFORK, on a
 * stack of its own), as posix_spawn and Python's subprocess make theirs: no page tables
 * are copied and no page is made copy-on-write, and the launcher, stopped until the exec,
 * does not compete with it for a CPU. Its start to its exec went from ~0.45 to ~0.3 ms.
 * So the child writes nothing the launcher reads after it (the fields are parsed anew
 * for each message) and uses system calls only: glibc's idea of the thread is the
 * launcher's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define AGENT 3
#define MAX_MESSAGE 65536 /* the agent sends bigger orders the old way (a fork) */
#define MAX_FIELDS 8192
#define CAP_HELD ((1u << CAP_SETUID) | (1u << CAP_SETGID))

static char message[MAX_MESSAGE + 1];
static char *fields[MAX_FIELDS];
static char path_buf[8192];

static void say(const char *a, const char *b, const char *c, const char *d) {
    /* what a failed start writes to the program's stderr, as the agent's fork path does */
    const char *parts[] = {"sandboxkit: ", a, b, c, d, "\n"};
    for (int i = 0; i < 6; i++) {
        if (parts[i] && *parts[i] && write(2, parts[i], strlen(parts[i])) < 0)
            return;
    }
}

static int capset_to(uint32_t caps) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    data[0].effective = data[0].permitted = caps;
    return (int)syscall(SYS_capset, &header, data);
}

static int separate(uid_t program, uid_t supervisor) {
    /* as _privs.separate: out of uid 0, keeping what the children's drop needs */
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) { /* its children are the user's processes: first for the OOM killer */
        if (write(fd, "1000", 4) < 0) {
        }
        close(fd);
    }
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
        return -1;
    for (int cap = 0; cap < 64; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
            if (errno == EINVAL && cap > 0)
                break; /* past the kernel's last capability */
            return -1;
        }
    }
    if (syscall(SYS_setgroups, 0, NULL) != 0 ||
        syscall(SYS_setresgid, supervisor, program, supervisor) != 0 ||
        syscall(SYS_setresuid, supervisor, program, supervisor) != 0 || capset_to(CAP_HELD) != 0 ||
        prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return -1;
    return 0;
}

static void exec_searching(char **argv, char **envp) {
    /* os.execvpe: a name with a slash as it is, else each directory of the job's PATH
     * (Python's default when it has none); the first error that is not "no such file"
     * is the one reported, else the last */
    const char *file = argv[0];
    if (strchr(file, '/')) {
        execve(file, argv, envp);
        return;
    }
    const char *path = ":/bin:/usr/bin"; /* os.defpath */
    for (char **e = envp; *e; e++) {
        if (strncmp(*e, "PATH=", 5) == 0) {
            path = *e + 5;
        }
    }
    int saved = 0, last = ENOENT;
    size_t flen = strlen(file);
    for (const char *dir = path;; dir++) {
        const char *end = strchrnul(dir, ':');
        size_t dlen = (size_t)(end - dir);
        if (dlen + flen + 2 <= sizeof path_buf) {
            memcpy(path_buf, dir, dlen);
            size_t at = dlen;
            if (dlen && dir[dlen - 1] != '/')
                path_buf[at++] = '/';
            memcpy(path_buf + at, file, flen + 1);
            execve(path_buf, argv, envp);
            last = errno;
            if (last != ENOENT && last != ENOTDIR && !saved)
                saved = last;
        }
        if (!*end)
            break;
        dir = end;
    }
    errno = saved ? saved : last;
}

static int set_limit(int resource, long long value) {
    struct rlimit want, now;
    rlim_t v = value < 0 ? RLIM_INFINITY : (rlim_t)value;
    want.rlim_cur = want.rlim_max = v;
    if (syscall(SYS_prlimit64, 0, resource, &want, NULL) == 0)
        return 0;
    if (syscall(SYS_prlimit64, 0, resource, NULL, &now) != 0)
        return -1;
    /* as _procs.set_limits: a hard limit below the wanted one stays, the soft one at it */
    want.rlim_cur = (now.rlim_max == RLIM_INFINITY || v < now.rlim_max) ? v : now.rlim_max;
    want.rlim_max = now.rlim_max;
    return (int)syscall(SYS_prlimit64, 0, resource, &want, NULL);
}

static void child(int nfields, int fds[3], uid_t program) {
    int i = 0;
    const char *cwd = fields[i++];
    for (int t = 0; t < 3; t++) {
        if (syscall(SYS_dup3, fds[t], t, 0) < 0)
            syscall(SYS_exit_group, 126);
    }
    if (syscall(SYS_close_range, 3, ~0U, 0) != 0) {
        for (int fd = 3; fd < 65536; fd++)
            syscall(SYS_close, fd);
    }
    syscall(SYS_setsid);
    if (syscall(SYS_setgroups, 0, NULL) != 0 ||
        syscall(SYS_setresgid, program, program, program) != 0 ||
        syscall(SYS_setresuid, program, program, program) != 0 || capset_to(0) != 0) {
        say("cannot drop the supervisor's privileges: ", strerror(errno), "", "");
        syscall(SYS_exit_group, 127);
    }
    int limits = atoi(fields[i++]);
    for (int n = 0; n < limits && i + 1 < nfields; n++, i += 2) {
        if (set_limit(atoi(fields[i]), atoll(fields[i + 1])) != 0)
            syscall(SYS_exit_group, 126);
    }
    if (syscall(SYS_chdir, cwd) != 0)
        syscall(SYS_exit_group, 126);
    int argc = atoi(fields[i++]);
    if (argc < 1 || i + argc >= nfields)
        syscall(SYS_exit_group, 126);
    char **argv = &fields[i];
    i += argc;
    int envc = atoi(fields[i]);
    fields[i++] = NULL; /* argv's end */
    if (envc < 0 || i + envc > nfields)
        syscall(SYS_exit_group, 126);
    char **envp = &fields[i];
    fields[i + envc] = NULL;
    exec_searching(argv, envp);
    /* os.execvpe's message: the name as Python's repr shows a plain one */
    say("cannot start '", argv[0], "': ", strerror(errno));
    syscall(SYS_exit_group, 127);
}

struct start {
    int nfields;
    int *fds;
    uid_t program;
};

/* the child's stack (the launcher is stopped while the child runs on it) */
static char child_stack[64 * 1024] __attribute__((aligned(16)));

static int child_main(void *arg) {
    struct start *start = arg;
    child(start->nfields, start->fds, start->program);
    return 127; /* not reached: child() ends in an exec or exit_group */
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    uid_t program = (uid_t)atol(argv[1]), supervisor = (uid_t)atol(argv[2]);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < 65; sig++)
        signal(sig, SIG_DFL); /* Python's ignored SIGPIPE and SIGXFSZ came through the exec */
    if (separate(program, supervisor) != 0)
        return 1;
    for (;;) {
        int fds[3] = {-1, -1, -1};
        union {
            char buf[CMSG_SPACE(sizeof fds)];
            struct cmsghdr align;
        } control;
        struct iovec iov = {message, MAX_MESSAGE};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        ssize_t got = recvmsg(AGENT, &msg, MSG_CMSG_CLOEXEC);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return 0; /* the agent went away */
        int nfds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                for (int k = 0; k < n; k++) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof fd);
                    if (nfds < 3)
                        fds[nfds++] = fd;
                    else
                        close(fd);
                }
            }
        }
        int answer = -EINVAL;
        int nfields = 0;
        if (nfds == 3 && !(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && message[got - 1] == '\0') {
            message[got] = '\0';
            for (char *p = message; p < message + got && nfields < MAX_FIELDS - 1;) {
                fields[nfields++] = p;
                p += strlen(p) + 1;
            }
            struct start start = {nfields, fds, program};
            int flags = CLONE_VM | CLONE_VFORK | CLONE_PARENT | SIGCHLD;
            pid_t pid = clone(child_main, child_stack + sizeof child_stack, flags, &start);
            answer = pid < 0 ? -errno : pid;
        }
        for (int k = 0; k < nfds; k++)
            close(fds[k]);
        if (send(AGENT, &answer, sizeof answer, MSG_NOSIGNAL) < 0)
            return 0;
    }
}
