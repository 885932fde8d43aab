#!/usr/bin/env bash
# Test hosts for fleets: each host is a network namespace with its own address (veth),
# its own containerd and its own dockerd (data root, exec root, config file, absolute
# cgroup parent, pid file), listening on TCP with mutual TLS from a CA made here.
#
#   sudo bash scripts/fleet.sh up [--hosts N] [--dir DIR] [--builder]
#                                     # N hosts (default 2); --builder adds one more dockerd
#                                     # on this machine's own network (unix socket only),
#                                     # where images can be built from the package mirror
#   sudo bash scripts/fleet.sh kill NAME [--dir DIR]         # SIGKILL that host's dockerd
#   sudo bash scripts/fleet.sh start NAME [--dir DIR]        # start it again (stale pid file removed)
#   sudo bash scripts/fleet.sh freeze NAME | thaw NAME       # SIGSTOP / SIGCONT its dockerd: a host
#                                                            # that keeps its sockets open, silent
#   sudo bash scripts/fleet.sh down [--dir DIR]              # stop everything, remove everything
#   sudo bash scripts/fleet.sh status [--dir DIR]
#
# `up` writes DIR/fleet.json (per host: name, url, netns, pid_file, socket; the client's
# certificates; `wrong_ca` material for tests) and prints its path, and DIR/engines.json,
# the same hosts as a sandboxkit fleet file (`sandboxkit fleet status --fleet FILE`).
# Nothing here touches the main engine (/var/run/docker.sock) or the host's iptables:
# the dockerds run with --iptables=false --ip-masq=false --bridge=none, and traffic only
# goes between this machine and these namespaces (198.18.0.0/15, RFC 2544's range for
# network tests, over point-to-point veth pairs). Several fleets may run at once: each
# `up` takes a free slot (its own names and subnet) and `down` gives it back.
set -euo pipefail

log() { printf '[fleet] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

RUN_BASE=/run/sandboxkit-fleet
DEFAULT_DIR=/var/lib/sandboxkit-fleet
PORT=2376

cmd="${1:-}"
[ -n "$cmd" ] || die "usage: fleet.sh up|down|kill|start|status [NAME] [--hosts N] [--dir DIR]"
shift
name=""
hosts=2
dir=""
builder=0
while [ $# -gt 0 ]; do
    case "$1" in
        --hosts) hosts="$2"; shift 2 ;;
        --dir) dir="$2"; shift 2 ;;
        --builder) builder=1; shift ;;
        -*) die "unknown option $1" ;;
        *) name="$1"; shift ;;
    esac
done

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, dockerd): run it with sudo"

# ------------------------------------------------------------------ tools
need_tools() {
    local missing=()
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v containerd >/dev/null 2>&1 || missing+=(containerd)
    command -v docker >/dev/null 2>&1 || missing+=(docker.io)
    if [ "${#missing[@]}" -gt 0 ]; then
        command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
        log "installing ${missing[*]} from the distribution"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# ------------------------------------------------------------------ layout
# DIR/slot holds this fleet's slot number; the slot names its namespaces, links, subnet
load_slot() {
    [ -f "$dir/slot" ] || die "no fleet at $dir (run: fleet.sh up --dir $dir)"
    slot="$(cat "$dir/slot")"
}

host_vars() {  # host_vars INDEX: the names and addresses of host INDEX of this slot
    local i="$1"
    hname="h$i"
    netns="skf${slot}h$i"
    veth_out="skf${slot}v$i"
    veth_in="skf${slot}p$i"
    host_ip="198.18.$slot.$((4 * i + 1))"
    ns_ip="198.18.$slot.$((4 * i + 2))"
    hdir="$dir/hosts/$hname"
    hrun="$RUN_BASE/$slot-$hname"
    cgparent="/sandboxkit-fleet-$slot-$hname"
}

builder_vars() {  # the builder: a dockerd on this machine's own network, unix socket only
    hname="builder"
    netns=""
    hdir="$dir/hosts/builder"
    hrun="$RUN_BASE/$slot-builder"
    cgparent="/sandboxkit-fleet-$slot-builder"
    veth_out=""
}

index_of() {  # index_of NAME
    case "$1" in h[0-9]*) echo "${1#h}" ;; *) die "no host named $1 (hosts are h1, h2, ...)" ;; esac
}

# ------------------------------------------------------------------ certificates
make_ca() {  # make_ca DIR CN
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$1/ca-key.pem" -out "$1/ca.pem" -days 7 -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>/dev/null
}

make_cert() {  # make_cert CA_DIR OUT_PREFIX CN USAGE [SAN]
    local ca="$1" out="$2" cn="$3" usage="$4" san="${5:-}"
    local ext
    ext="$(mktemp)"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$usage"
        echo "subjectKeyIdentifier=hash"
        echo "authorityKeyIdentifier=keyid"
        [ -n "$san" ] && echo "subjectAltName=$san"
    } >"$ext"
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$out-key.pem" -out "$out.csr" -subj "/CN=$cn" 2>/dev/null
    openssl x509 -req -in "$out.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca-key.pem" \
        -CAcreateserial -out "$out-cert.pem" -days 7 -extfile "$ext" 2>/dev/null
    rm -f "$out.csr" "$ext"
    chmod 0644 "$out-key.pem"  # test material, readable by the tests' user
}

# ------------------------------------------------------------------ one host
in_netns() {  # in_netns CMD...: in the background, in the host's namespace (none: the builder's)
    # only the network namespace is entered: `ip netns exec` would remount /sys and leave
    # /sys/fs/cgroup empty for dockerd
    if [ -n "$netns" ]; then
        nohup setsid nsenter --net="/run/netns/$netns" "$@" &
    else
        nohup setsid "$@" &
    fi
}

start_dockerd() {  # needs host_vars; starts (or restarts) this host's dockerd
    mkdir -p "$hrun/exec"
    rm -f "$hrun/dockerd.pid"  # a SIGKILLed dockerd leaves it, and refuses to start over it
    local listen=(-H "unix://$hrun/docker.sock")
    # --bridge=none makes dockerd DELETE the interface named docker0 in its network
    # namespace: in the host's own (the builder), that is the main engine's bridge. There
    # the builder gets a bridge of its own instead.
    local bridge=(--bridge=none)
    if [ -z "$netns" ]; then
        local br="skfb$slot"
        ip link show "$br" >/dev/null 2>&1 || {
            ip link add "$br" type bridge
            ip addr add "198.18.$slot.249/29" dev "$br"
            ip link set "$br" up
        }
        bridge=(--bridge="$br")
    fi
    local tls=()
    if [ -n "$netns" ]; then
        listen+=(-H "tcp://$ns_ip:$PORT")
        tls=(--tlsverify --tlscacert "$dir/certs/ca.pem"
            --tlscert "$hdir/server-cert.pem" --tlskey "$hdir/server-key.pem")
    fi
    in_netns dockerd \
        --data-root "$hdir/data" \
        --exec-root "$hrun/exec" \
        --pidfile "$hrun/dockerd.pid" \
        --config-file "$hdir/daemon.json" \
        --containerd "$hrun/containerd.sock" \
        --cgroup-parent "$cgparent" \
        "${listen[@]}" "${tls[@]}" \
        --iptables=false --ip-masq=false --ip-forward=false "${bridge[@]}" \
        >>"$hdir/dockerd.log" 2>&1 </dev/null
    local i
    for i in $(seq 1 120); do
        if DOCKER_HOST="unix://$hrun/docker.sock" docker version >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.25
    done
    tail -n 30 "$hdir/dockerd.log" >&2 || true
    die "dockerd of $hname did not answer within 30s (log: $hdir/dockerd.log)"
}

start_containerd() {
    mkdir -p "$hrun/containerd-state" "$hdir/containerd"
    cat >"$hdir/containerd.toml" <<TOML
version = 2
root = "$hdir/containerd"
state = "$hrun/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$hrun/containerd.sock"
[ttrpc]
  address = "$hrun/containerd.sock.ttrpc"
[debug]
  address = "$hrun/containerd-debug.sock"
[metrics]
  address = ""
TOML
    in_netns containerd --config "$hdir/containerd.toml" \
        >>"$hdir/containerd.log" 2>&1 </dev/null
    echo $! >"$hrun/containerd.pid"
    local i
    for i in $(seq 1 80); do
        [ -S "$hrun/containerd.sock" ] && return 0
        sleep 0.25
    done
    die "containerd of $hname did not start (log: $hdir/containerd.log)"
}

up_host() {  # up_host INDEX
    host_vars "$1"
    mkdir -p "$hdir" "$hrun"
    ip netns add "$netns"
    ip link add "$veth_out" type veth peer name "$veth_in" netns "$netns"
    ip addr add "$host_ip/30" dev "$veth_out"
    ip link set "$veth_out" up
    ip -n "$netns" link set "$veth_in" name eth0
    ip -n "$netns" addr add "$ns_ip/30" dev eth0
    ip -n "$netns" link set lo up
    ip -n "$netns" link set eth0 up
    make_cert "$dir/certs" "$hdir/server" "$hname" serverAuth "IP:$ns_ip"
    local runsc_entry
    runsc_entry="$(python3 "$(dirname "${BASH_SOURCE[0]}")/runsc-runtime.py")"
    if [ -n "$runsc_entry" ]; then
        printf '{"runtimes": {"runsc": %s}}\n' "$runsc_entry" >"$hdir/daemon.json"
    else
        echo '{}' >"$hdir/daemon.json"
    fi
    start_containerd
    start_dockerd
    log "$hname up: tcp://$ns_ip:$PORT (netns $netns)"
}

running() {  # running PID: alive and not a zombie (a killed orphan waits for init to reap it)
    [ -n "$1" ] && [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

kill_pidfile() {  # kill_pidfile FILE SIGNAL
    [ -f "$1" ] || return 0
    local pid
    pid="$(cat "$1" 2>/dev/null || true)"
    [ -n "$pid" ] && kill "-$2" "$pid" 2>/dev/null || true
}

wait_gone() {  # wait_gone FILE SECONDS: until the pid in FILE has exited
    [ -f "$1" ] || return 0
    local pid i
    pid="$(cat "$1" 2>/dev/null || true)"
    [ -n "$pid" ] || return 0
    for i in $(seq 1 $(($2 * 4))); do
        running "$pid" || return 0
        sleep 0.25
    done
    return 1
}

up_builder() {
    builder_vars
    mkdir -p "$hdir" "$hrun"
    echo '{}' >"$hdir/daemon.json"
    start_containerd
    start_dockerd
    log "builder up: unix://$hrun/docker.sock"
}

down_host() {  # down_host INDEX|builder: stop, then remove every trace of the host
    if [ "$1" = builder ]; then builder_vars; else host_vars "$1"; fi
    kill_pidfile "$hrun/dockerd.pid" TERM
    wait_gone "$hrun/dockerd.pid" 20 || kill_pidfile "$hrun/dockerd.pid" KILL
    kill_pidfile "$hrun/containerd.pid" TERM
    wait_gone "$hrun/containerd.pid" 10 || kill_pidfile "$hrun/containerd.pid" KILL
    # whatever is left (shims, container processes) lives in the host's cgroups or netns
    local cg pids
    for cg in /sys/fs/cgroup/*"$cgparent" /sys/fs/cgroup/*/"$cgparent"; do
        [ -d "$cg" ] || continue
        pids="$(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null || true)"
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    done
    if [ -n "$netns" ] && [ -e "/run/netns/$netns" ]; then
        pids="$(ip netns pids "$netns" 2>/dev/null || true)"
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    fi
    sleep 0.2
    # mounts the engine left (overlays, shm, netns files) under its directories
    local m
    for m in $(awk -v a="$hdir" -v b="$hrun" 'index($2, a) == 1 || index($2, b) == 1 {print $2}' \
        /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    for cg in $(find /sys/fs/cgroup -depth -type d -path "*$cgparent*" 2>/dev/null); do
        rmdir "$cg" 2>/dev/null || true
    done
    if [ -n "$netns" ]; then
        ip link del "$veth_out" 2>/dev/null || true
        ip netns del "$netns" 2>/dev/null || true
    else
        ip link del "skfb$slot" 2>/dev/null || true  # the builder's own bridge
    fi
    rm -rf "$hrun" "$hdir"
}

write_json() {
    # one loop, two files: DIR/fleet.json (for tests and scripts) and DIR/engines.json
    # (the same hosts as a sandboxkit fleet file: `--fleet`, SANDBOXKIT_FLEET)
    local i sep="" hosts_json="" engines_json=""
    for i in $(seq 1 "$hosts"); do
        host_vars "$i"
        hosts_json+="$sep    {\"name\": \"$hname\", \"url\": \"tcp://$ns_ip:$PORT\", \"netns\": \"$netns\", \"pid_file\": \"$hrun/dockerd.pid\", \"socket\": \"unix://$hrun/docker.sock\", \"data_root\": \"$hdir/data\"}"
        engines_json+="$sep  {\"url\": \"tcp://$ns_ip:$PORT\", \"ca_cert\": \"$dir/certs/ca.pem\", \"client_cert\": \"$dir/certs/client-cert.pem\", \"client_key\": \"$dir/certs/client-key.pem\"}"
        sep=$',\n'
    done
    local builder_json=""
    [ -f "$dir/builder" ] && builder_json="  \"builder\": \"unix://$RUN_BASE/$slot-builder/docker.sock\","
    cat >"$dir/fleet.json" <<JSON
{
  "slot": $slot,
  "ca_cert": "$dir/certs/ca.pem",
  "client_cert": "$dir/certs/client-cert.pem",
  "client_key": "$dir/certs/client-key.pem",
  "cert_path": "$dir/certs/docker",
  "wrong_ca": {"ca_cert": "$dir/certs/wrong/ca.pem", "client_cert": "$dir/certs/wrong/client-cert.pem", "client_key": "$dir/certs/wrong/client-key.pem"},
$builder_json
  "hosts": [
$hosts_json
  ]
}
JSON
    printf '{"engines": [\n%s\n]}\n' "$engines_json" >"$dir/engines.json"
}

# ------------------------------------------------------------------ commands
dir="${dir:-$DEFAULT_DIR}"
case "$cmd" in
    up)
        [ "$hosts" -ge 1 ] && [ "$hosts" -le 60 ] || die "--hosts must be 1..60"
        [ ! -f "$dir/slot" ] || die "a fleet is already up at $dir (fleet.sh down --dir $dir first)"
        need_tools
        mkdir -p "$RUN_BASE" "$dir"
        slot=""
        for s in $(seq 0 63); do
            if mkdir "$RUN_BASE/slot-$s" 2>/dev/null; then slot=$s; break; fi
        done
        [ -n "$slot" ] || die "no free fleet slot in $RUN_BASE"
        echo "$dir" >"$RUN_BASE/slot-$slot/dir"
        echo "$slot" >"$dir/slot"
        echo "$hosts" >"$dir/hosts-count"
        # a safety net: addresses of this slot never leave by the default route, even
        # while a host's veth is being made or removed (the /30s of the veths win)
        ip route add blackhole "198.18.$slot.0/24"
        trap 'log "bringing the fleet up failed; taking it down"; "$0" down --dir "$dir" || true' ERR
        mkdir -p "$dir/certs/wrong"
        make_ca "$dir/certs" "sandboxkit fleet test CA (slot $slot)"
        make_cert "$dir/certs" "$dir/certs/client" "sandboxkit-tests" clientAuth
        make_ca "$dir/certs/wrong" "an unrelated CA"
        make_cert "$dir/certs/wrong" "$dir/certs/wrong/client" "stranger" clientAuth
        # docker's layout (DOCKER_CERT_PATH): ca.pem, cert.pem, key.pem
        mkdir -p "$dir/certs/docker"
        cp "$dir/certs/ca.pem" "$dir/certs/docker/ca.pem"
        cp "$dir/certs/client-cert.pem" "$dir/certs/docker/cert.pem"
        cp "$dir/certs/client-key.pem" "$dir/certs/docker/key.pem"
        chmod 0755 "$dir" "$dir/certs" "$dir/certs/wrong" "$dir/certs/docker"
        for i in $(seq 1 "$hosts"); do up_host "$i"; done
        if [ "$builder" = 1 ]; then
            echo 1 >"$dir/builder"
            up_builder
        fi
        trap - ERR
        write_json
        echo "$dir/fleet.json"
        ;;
    down)
        [ -f "$dir/slot" ] || { log "no fleet at $dir"; exit 0; }
        load_slot
        n="$(cat "$dir/hosts-count" 2>/dev/null || echo 0)"
        for i in $(seq 1 "$n"); do down_host "$i"; done
        [ -f "$dir/builder" ] && down_host builder
        rm -rf "$dir/builder"
        rm -rf "$dir/certs" "$dir/hosts" "$dir/fleet.json" "$dir/engines.json" "$dir/slot" "$dir/hosts-count"
        rmdir "$dir" 2>/dev/null || true
        ip route del blackhole "198.18.$slot.0/24" 2>/dev/null || true
        rm -rf "$RUN_BASE/slot-$slot"
        rmdir "$RUN_BASE" 2>/dev/null || true
        log "fleet slot $slot down"
        ;;
    freeze|thaw)
        load_slot
        host_vars "$(index_of "$name")"
        if [ "$cmd" = freeze ]; then
            kill_pidfile "$hrun/dockerd.pid" STOP
            log "$hname: dockerd stopped (SIGSTOP): its sockets stay open, nothing answers"
        else
            kill_pidfile "$hrun/dockerd.pid" CONT
            log "$hname: dockerd continues (SIGCONT)"
        fi
        ;;
    kill)
        load_slot
        host_vars "$(index_of "$name")"
        kill_pidfile "$hrun/dockerd.pid" KILL
        wait_gone "$hrun/dockerd.pid" 10 || die "dockerd of $hname did not die"
        log "$hname: dockerd killed (SIGKILL)"
        ;;
    start)
        load_slot
        host_vars "$(index_of "$name")"
        if [ -f "$hrun/dockerd.pid" ] && running "$(cat "$hrun/dockerd.pid")"; then
            log "$hname: dockerd already runs"
        else
            start_dockerd
            log "$hname: dockerd started"
        fi
        ;;
    status)
        load_slot
        n="$(cat "$dir/hosts-count" 2>/dev/null || echo 0)"
        for i in $(seq 1 "$n"); do
            host_vars "$i"
            if DOCKER_HOST="unix://$hrun/docker.sock" docker version >/dev/null 2>&1; then
                echo "$hname tcp://$ns_ip:$PORT up"
            else
                echo "$hname tcp://$ns_ip:$PORT down"
            fi
        done
        ;;
    *) die "unknown command $cmd (up, down, kill, start, freeze, thaw, status)" ;;
esac
