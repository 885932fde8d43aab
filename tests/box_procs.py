"""What a program in a sandbox sees of its processes, the agent's own helpers told apart.

Besides PID 1 a sandbox may hold the agent's helpers: the zygote that forks Python's
spares (``agent/_zygote.py``) or the launcher that starts exec'd programs
(``agent/_launch.py``). Programs see them in ``/proc`` as they see PID 1. A helper is a
child of PID 1 with PID 1's real uid (the supervisor's, which no program can take) that
runs the agent's command line or the launcher: a leftover of a program is none of these.

``HELPERS`` is Python source for a test's program: it defines ``helpers()``, their pids.
"""

HELPERS = """
def helpers():
    import os
    def status(p):
        return dict(line.split(':', 1) for line in open(f'/proc/{p}/status') if ':' in line)
    def cmdline(p):
        return open(f'/proc/{p}/cmdline', 'rb').read()
    uid, agent = status(1)['Uid'].split()[0], cmdline(1)
    found = set()
    for p in os.listdir('/proc'):
        if not p.isdigit() or int(p) in (1, os.getpid()):
            continue
        try:
            s, cmd = status(p), cmdline(p)
        except OSError:
            continue
        if s['PPid'].strip() == '1' and s['Uid'].split()[0] == uid and (
            cmd == agent or cmd.startswith(b'/opt/sandboxkit/launch\\0')
        ):
            found.add(int(p))
    return found
"""

# the pids a program sees but for the agent's helpers, sorted: ``procs``; and those but
# for PID 1 and the program itself: ``others``
PROCS = HELPERS + (
    "import os\n"
    "procs = sorted(int(p) for p in os.listdir('/proc')\n"
    "               if p.isdigit() and int(p) not in helpers())\n"
    "others = [p for p in procs if p not in (1, os.getpid())]\n"
)
