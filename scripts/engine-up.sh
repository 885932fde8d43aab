#!/usr/bin/env bash
# Make sure a Docker engine answers. Use the one that runs; otherwise, as root on
# Debian/Ubuntu, install docker.io, runsc (gVisor) and debootstrap from the distribution,
# register the runsc runtime, start dockerd in the background and wait for it.
set -euo pipefail

log() { printf '[engine-up] %s\n' "$*" >&2; }
answers() { docker info >/dev/null 2>&1; }

if answers; then
    log "engine answers: $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')"
    if [ "$(docker version --format '{{.Server.Experimental}}' 2>/dev/null)" != true ]; then
        log "its experimental API is off: paused gVisor sessions keep files, not memory" \
            "(add \"experimental\": true to /etc/docker/daemon.json and restart dockerd)"
    fi
    exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    cat >&2 <<'MSG'
[engine-up] No Docker engine answers and this script can only install one as root on
Debian/Ubuntu. Install and start it yourself, then run this again:
    sudo apt-get install docker.io runsc debootstrap && sudo systemctl start docker
and make sure your user may use it (e.g. `sudo usermod -aG docker $USER`, then log in again).
MSG
    exit 1
fi

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v runsc >/dev/null 2>&1 || missing+=(runsc)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} from the distribution"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # what dpkg just wrote is still being flushed: containerd's first write of its database
    # would wait behind it (see the start below)
    sync
fi

# Register gVisor (scripts/runsc-runtime.py says which runsc and why: Debian's cannot give a
# sandbox a network on kernels >= 6.11 without a one-probe fix).
# "experimental": the checkpoint API, which keeps a paused gVisor session's memory
# (Sandbox.pause); without it pause keeps files only.
mkdir -p /etc/docker
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! runsc_entry="$(python3 "$here/runsc-runtime.py")"; then
    log "could not check runsc's network here; registering it with --network=none"
    runsc_entry="{\"path\": \"$(command -v runsc)\", \"runtimeArgs\": [\"--network=none\"]}"
fi
if [ ! -s /etc/docker/daemon.json ]; then
    if [ -n "$runsc_entry" ]; then
        printf '{\n  "experimental": true,\n  "runtimes": {"runsc": %s}\n}\n' "$runsc_entry" \
            >/etc/docker/daemon.json
    else
        printf '{\n  "experimental": true\n}\n' >/etc/docker/daemon.json
    fi
else
    # an engine this script configured before: experimental on, and gVisor's entry refreshed
    # when it is the one this script wrote (runsc with --network=none)
    python3 - /etc/docker/daemon.json "$runsc_entry" <<'PY'
import json, sys
path, entry = sys.argv[1], sys.argv[2]
with open(path) as f:
    config = json.load(f)
config["experimental"] = True
runsc = config.get("runtimes", {}).get("runsc")
if entry and runsc and runsc.get("runtimeArgs") == ["--network=none"]:
    config["runtimes"]["runsc"] = json.loads(entry)
with open(path, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
PY
fi

# this machine's own dockerd: not a zombie (one just killed stays one until reaped), not a
# fleet host's (scripts/fleet.sh starts those with --pidfile)
main_dockerds() {
    ps -C dockerd -o pid=,stat=,args= 2>/dev/null | awk '$2 !~ /^Z/ && !/--pidfile/ {print $1}'
}
dockerd_runs() { [ -n "$(main_dockerds)" ]; }

if ! dockerd_runs; then
    if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
        systemctl start docker || true
    fi
fi

# dockerd gives the containerd it starts 15 s to answer and exits when it does not. Once, on a
# fresh CI machine, it did not (its log held only dockerd's retries); a containerd waits that
# long when its database is locked (an orphan containerd) or its first write is stuck behind
# a busy disk. So a start that fails is logged, what it left behind is cleared, and it is
# tried again, up to three times.
our_containerd='containerd --config /var/run/docker/containerd/containerd.toml'  # dockerd's own
stop_ours() {  # a dockerd and its containerd that never answered, and their stale files
    # shellcheck disable=SC2046 # one argument per pid
    kill $(main_dockerds) 2>/dev/null || true
    pkill -f "$our_containerd" 2>/dev/null || true
    for _ in $(seq 1 20); do
        dockerd_runs || break
        sleep 0.5
    done
    # shellcheck disable=SC2046
    kill -9 $(main_dockerds) 2>/dev/null || true
    pkill -9 -f "$our_containerd" 2>/dev/null || true
    rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
}

dockerd_log=/var/log/sandboxkit-dockerd.log
# a containerd whose dockerd is gone holds the lock on its database: the next one would wait
dockerd_runs || stop_ours
for attempt in 1 2 3; do
    if ! dockerd_runs; then
        log "starting dockerd in the background (log: $dockerd_log, attempt $attempt)"
        printf '\n--- engine-up: attempt %s at %s\n' "$attempt" "$(date -u +%FT%TZ)" >>"$dockerd_log"
        nohup setsid dockerd >>"$dockerd_log" 2>&1 </dev/null &
    fi
    for tick in $(seq 1 240); do  # up to 120 s while dockerd lives
        if answers; then
            log "engine up: $(docker version --format '{{.Server.Version}}')"
            exit 0
        fi
        # (nohup and setsid take a moment to become dockerd: 2 s before it counts as gone)
        if [ "$tick" -gt 4 ] && ! dockerd_runs; then
            break
        fi
        sleep 0.5
    done
    answers && exit 0
    log "dockerd did not answer (attempt $attempt); its log ends with (gRPC retries left out):"
    grep -v 'module=grpc' "$dockerd_log" | tail -n 25 >&2 || true
    stop_ours
done
log "dockerd did not start in three attempts; its whole log: $dockerd_log"
exit 1
