"""sandboxkit's own seccomp profile, passed with every container (pure: data, no I/O).

sandboxkit does not lean on the engine's default profile, which changes with the
engine's version (Docker 20.10 to 24 let ``io_uring_setup`` through; 25.0 refuses it).
The profile below starts from the engine's default list (moby's
``profiles/seccomp/default.json``, as Docker 28 ships it) for a container holding no
capability, and refuses more: everything in :data:`REFUSED`, each with its reason.

Refused calls answer ``EPERM`` (a program reads an error, it is not killed), except
``clone3``, which answers ``ENOSYS`` so that the C library falls back to ``clone``,
whose flags the filter can read (a ``clone3`` argument is a pointer it cannot).

The OCI runtime applies the profile: runc does; runsc (gVisor) by default does not, its
own kernel answers the program's calls and the host kernel is never reached by them
(docs/security.md says what holds there).

:data:`PROFILE_DIGEST` goes into every image's tag (``_images.dockerfile``): a changed
profile is a changed sandbox.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

EPERM = 1
ENOSYS = 38

# Every call a program may make, whatever its arguments: the engine's default allow
# list less what REFUSED names. Calls absent here and from the rules below answer EPERM.
ALLOWED: tuple[str, ...] = (
    *("accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat"),
    *("capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime"),
    *("clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime"),
    *("clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close"),
    *("close_range", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3"),
    *("epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait"),
    *("epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve"),
    *("execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64"),
    *("fadvise64_64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2"),
    *("fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr"),
    *("flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64"),
    *("fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex"),
    *("futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake"),
    *("futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32"),
    *("geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32"),
    *("getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid"),
    *("getpriority", "getrandom", "getresgid", "getresgid32", "getresuid"),
    *("getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid"),
    *("getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday"),
    *("getuid", "getuid32", "getxattr", "getxattrat", "inotify_add_watch"),
    *("inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl"),
    *("io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64"),
    *("ioprio_get", "ioprio_set", "io_setup", "io_submit", "ipc", "kill"),
    *("landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self"),
    *("lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listmount"),
    *("listxattr", "listxattrat", "llistxattr", "_llseek", "lremovexattr", "lseek"),
    *("lsetxattr", "lstat", "lstat64", "madvise", "map_shadow_stack", "membarrier"),
    *("memfd_create", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock"),
    *("mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr", "mq_notify"),
    *("mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend"),
    *("mq_timedsend_time64", "mq_unlink", "mremap", "mseal", "msgctl", "msgget"),
    *("msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap", "nanosleep"),
    *("newfstatat", "_newselect", "open", "openat", "openat2", "pause", "pidfd_open"),
    *("pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect"),
    *("poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2"),
    *("prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64"),
    *("pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv"),
    *("recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "removexattr"),
    *("removexattrat", "rename", "renameat", "renameat2", "restart_syscall"),
    *("riscv_hwprobe", "rmdir", "rseq", "rt_sigaction", "rt_sigpending"),
    *("rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend"),
    *("rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo"),
    *("sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max"),
    *("sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval"),
    *("sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr"),
    *("sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select"),
    *("semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send"),
    *("sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid"),
    *("setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups"),
    *("setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32"),
    *("setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32"),
    *("setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area"),
    *("set_tid_address", "setuid", "setuid32", "setxattr", "setxattrat", "shmat"),
    *("shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4"),
    *("sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat"),
    *("stat64", "statfs", "statfs64", "statmount", "statx", "symlink", "symlinkat"),
    *("sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time"),
    *("timer_create", "timer_delete", "timer_getoverrun", "timer_gettime"),
    *("timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create"),
    *("timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64"),
    *("times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname"),
    *("unlink", "unlinkat", "uretprobe", "utime", "utimensat", "utimensat_time64"),
    *("utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev"),
)

# Calls allowed on one architecture family only (Docker's "arches" names).
ALLOWED_ON_ARCH: dict[str, tuple[str, ...]] = {
    "arch_prctl": ("amd64", "x32"),  # the thread pointer (%fs): every x86-64 program
    "arm_fadvise64_64": ("arm", "arm64"),
    "arm_sync_file_range": ("arm", "arm64"),
    "sync_file_range2": ("arm", "arm64"),
    "breakpoint": ("arm", "arm64"),
    "cacheflush": ("arm", "arm64"),  # JITs (the JVM, V8) flush what they wrote
    "set_tls": ("arm", "arm64"),
}

# Every call refused on purpose, with why. The first group the engine's default
# profile lets through (in some versions or on some kernels); the rest it refuses too to
# a container without capabilities, named here so the list of walls is in one place.
REFUSED: dict[str, str] = {
    # -- refused here, allowed by the engine's default profile (some versions/kernels)
    "io_uring_setup": "io_uring: a long line of kernel privilege escalations; "
    "Docker >= 25, ChromeOS, Android and Google's servers turn it off",
    "io_uring_enter": "io_uring (see io_uring_setup)",
    "io_uring_register": "io_uring (see io_uring_setup)",
    "ptrace": "tracing another process (the supervisor, a neighbour run's process); "
    "the engine allows it on kernels >= 4.8; no built-in language needs a debugger",
    "process_vm_readv": "reads another process's memory (the supervisor's); "
    "the engine allows it on kernels >= 4.8",
    "process_vm_writev": "writes another process's memory; the engine allows it on kernels >= 4.8",
    "modify_ldt": "x86 16-bit segment tables: only DOS and Wine emulators use them, "
    "and they have a history of kernel bugs (CVE-2015-5157, CVE-2017-17053)",
    "name_to_handle_at": "file handles only open_by_handle_at (refused) can use; "
    "gVisor does not implement it",
    "fanotify_mark": "useless without fanotify_init (refused); gVisor does not implement fanotify",
    "remap_file_pages": "deprecated since Linux 3.16 (emulated, rarely exercised); "
    "gVisor does not implement it",
    "memfd_secret": "memory hidden from the kernel's own mappings: no language runtime "
    "uses it; gVisor does not implement it",
    # -- refused by the engine's default profile too (without capabilities)
    "userfaultfd": "page faults handled in user space: the classic tool for winning "
    "kernel race conditions",
    "unshare": "new namespaces; a user namespace hands the program every capability "
    "inside it and a much larger kernel surface",
    "setns": "joining other namespaces",
    "mount": "mounting filesystems",
    "umount": "unmounting filesystems",
    "umount2": "unmounting filesystems",
    "fsopen": "the new mount API (mount, refused)",
    "fsconfig": "the new mount API (mount, refused)",
    "fsmount": "the new mount API (mount, refused)",
    "fspick": "the new mount API (mount, refused)",
    "move_mount": "the new mount API (mount, refused)",
    "open_tree": "the new mount API (mount, refused)",
    "mount_setattr": "the new mount API (mount, refused)",
    "pivot_root": "changing the root filesystem",
    "chroot": "changing the root directory",
    "keyctl": "the kernel keyrings are not namespaced: keys of the host's users",
    "add_key": "the kernel keyrings (see keyctl)",
    "request_key": "the kernel keyrings (see keyctl)",
    "bpf": "loading programs into the kernel (the verifier is a frequent CVE source)",
    "perf_event_open": "performance counters: a side channel and a frequent CVE source",
    "kexec_load": "replacing the running kernel",
    "kexec_file_load": "replacing the running kernel",
    "init_module": "loading kernel modules",
    "finit_module": "loading kernel modules",
    "delete_module": "unloading kernel modules",
    "open_by_handle_at": "opens host files by handle past the mount (the 'shocker' escape)",
    "reboot": "rebooting the machine",
    "swapon": "turns the host's swap devices on",
    "swapoff": "turns the host's swap devices off",
    "acct": "the host's process accounting file",
    "syslog": "the kernel's log ring (kernel addresses)",
    "settimeofday": "sets the machine's clock (every container's)",
    "clock_settime": "sets the machine's clock (every container's)",
    "clock_settime64": "sets the machine's clock (every container's)",
    "stime": "sets the machine's clock (every container's)",
    "sethostname": "the host name (the engine sets a neutral one)",
    "setdomainname": "the NIS domain name (the engine sets it)",
    "iopl": "direct access to the machine's I/O ports",
    "ioperm": "direct access to the machine's I/O ports",
    "kcmp": "compares other processes' kernel objects",
    "pidfd_getfd": "takes a descriptor out of another process",
    "process_madvise": "advises on another process's memory",
    "lookup_dcookie": "the kernel profiler's internals (oprofile)",
    "quotactl": "the host's disk quotas",
    "quotactl_fd": "the host's disk quotas",
    "mbind": "NUMA memory placement",
    "set_mempolicy": "NUMA memory placement",
    "set_mempolicy_home_node": "NUMA memory placement",
    "get_mempolicy": "NUMA memory placement",
    "migrate_pages": "moves other processes' pages between NUMA nodes",
    "move_pages": "moves other processes' pages between NUMA nodes",
    "vhangup": "hangs up the terminal",
    "nfsservctl": "the kernel NFS server (removed in Linux 3.1)",
    "uselib": "a.out shared libraries (obsolete)",
    "ustat": "obsolete (statfs answers it)",
    "sysfs": "obsolete (/proc/filesystems answers it)",
    "_sysctl": "obsolete, removed in Linux 5.5",
    "vm86": "virtual 8086 mode (DOS emulators)",
    "vm86old": "virtual 8086 mode (DOS emulators)",
    "lsm_get_self_attr": "security-module attributes",
    "lsm_set_self_attr": "security-module attributes",
    "lsm_list_modules": "security-module attributes",
}

# personality(2) values a program may set: PER_LINUX, PER_LINUX32, UNAME26, both, and
# the query (0xffffffff). Every other persona (READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE, ...)
# loosens the kernel's defences.
PERSONAS = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
AF_ALG = 38  # the kernel's crypto API as sockets: a frequent CVE source, refused
AF_VSOCK = 40  # sockets to the hypervisor: refused
CLONE_NAMESPACES = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


def _arg(index: int, value: int, op: str, value_two: int = 0) -> dict[str, Any]:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


def profile() -> dict[str, Any]:
    """The profile as the engine's ``seccomp=`` security option takes it."""
    refused = set(REFUSED)
    if refused & set(ALLOWED) or refused & set(ALLOWED_ON_ARCH):
        raise AssertionError(f"both allowed and refused: {refused & {*ALLOWED, *ALLOWED_ON_ARCH}}")
    allow = "SCMP_ACT_ALLOW"
    rules: list[dict[str, Any]] = [{"names": sorted(ALLOWED), "action": allow}]
    arches: dict[tuple[str, ...], list[str]] = {}
    for name, on in ALLOWED_ON_ARCH.items():
        arches.setdefault(on, []).append(name)
    rules += [
        {"names": sorted(names), "action": allow, "includes": {"arches": list(on)}}
        for on, names in arches.items()
    ]
    rules += [
        # sockets of every family but AF_ALG and AF_VSOCK (the one between is AF_NFC)
        {"names": ["socket"], "action": allow, "args": [_arg(0, AF_ALG, "SCMP_CMP_LT")]},
        {"names": ["socket"], "action": allow, "args": [_arg(0, AF_ALG + 1, "SCMP_CMP_EQ")]},
        {"names": ["socket"], "action": allow, "args": [_arg(0, AF_VSOCK, "SCMP_CMP_GT")]},
        *(
            {"names": ["personality"], "action": allow, "args": [_arg(0, p, "SCMP_CMP_EQ")]}
            for p in PERSONAS
        ),
        # clone without a namespace flag (the flags are the first argument on x86, arm)
        {
            "names": ["clone"],
            "action": allow,
            "args": [_arg(0, CLONE_NAMESPACES, "SCMP_CMP_MASKED_EQ", 0)],
        },
        # clone3's flags sit behind a pointer: ENOSYS sends the C library to clone
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
        # named so that the answer is EPERM whatever the runtime does with calls newer
        # than the ones a profile names (runc answers those ENOSYS)
        {"names": sorted(refused), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
    ]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "archMap": [
            {
                "architecture": "SCMP_ARCH_X86_64",
                "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            },
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        ],
        "syscalls": rules,
    }


PROFILE_JSON = json.dumps(profile(), sort_keys=True, separators=(",", ":"))
PROFILE_DIGEST = hashlib.sha256(PROFILE_JSON.encode()).hexdigest()
SECURITY_OPT = f"seccomp={PROFILE_JSON}"
