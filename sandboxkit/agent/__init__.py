"""The in-container supervisor: PID 1 of every sandbox, standard library only.

Its modules, with the wire protocol (``sandboxkit/_protocol.py``), are copied into each
image (``/opt/sandboxkit/lib``) and run as ``python3 -I /opt/sandboxkit/agent.pyc``
(``__main__``, see ``_images.dockerfile``). The host never imports this package.

| module | one job |
| --- | --- |
| ``__main__`` | the entry: puts the image's ``lib/`` on ``sys.path``, then ``_boot.main`` |
| ``_boot`` | the start: out of the program's uid, launcher or zygote, channel, serve |
| ``_serve`` | ready frame, the host's input, one job at a time |
| ``_run`` | one run's life: start, stdin, output and its cap, limits, the EXIT frame |
| ``_privs`` | the agent's uid and four capabilities, and every child's drop to none |
| ``_procs`` | the forked child's setup, killing (PID 1 only) and reaping, /proc figures |
| ``_spare`` | a child forked ahead of the next run, set up but for the job |
| ``_zygote`` | a small early copy of the agent that clones the spares in its stead |
| ``_launch`` | exec'd programs started by a small C process's clone (``launch.c``) |
| ``_helper`` | the agent's end of the launcher and the zygote: a socket, a pid |
| ``_prestart`` | a language's runtime started before its first step (node, tsc, javac) |
| ``_files`` | write, read and list under the workdir, never following a symlink |
| | (and a session run's own files, kept apart from the workdir) |
| ``_inline`` | Python run in the forked, pre-loaded interpreter |
| ``_kernel`` | a session's persistent Python interpreter |
| ``_display`` | rich outputs (figures, tables, images) as MIME bundles |
| ``_host`` | frames to the host on descriptor 1 |
| ``prestart.js`` ... | the pre-started runtimes' own code (also ``prestart_tsc.js``, |
| | ``SandboxkitJavac.java``) |

Why PID 1 and not a user program: PID 1 ignores any signal it has no handler for, even
SIGKILL sent from inside its own namespace, so user code cannot kill its supervisor; and
``kill(-1, SIGKILL)`` from PID 1 reaches every other process in the container, which is
how leftovers (orphans, daemons, fork bombs) are wiped after a run. The agent refuses to
start anywhere but as PID 1 of a PID namespace (tests run it under ``unshare --pid``).

Why user output cannot forge our framing: the user's program writes into pipes that this
process reads and frames; the container's stdout (the attach stream) is held only by this
process, which runs as another uid than the user's program (``_privs``) and marks itself
non-dumpable, so that ``/proc/1/fd/1`` cannot be opened by user code. Only this process
writes frames.

Start-up is paid once per container, each run's work after the fork: the modules import
no ``typing`` at run time (``TYPE_CHECKING = False``), and what every run needs
(``resource``) is imported at start-up, not in the forked child.
"""
