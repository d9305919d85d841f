#!/usr/bin/env bash
# Relay throughput, latency and CPU against a baseline, in one run of the same harness:
#   (a) replay → sink                                   the next hop alone
#   (b) replay → conbool → sink                         the relay
#   (c) replay → Postfix smtpd_proxy_filter → sink      a Postfix before-queue proxy
# for several message sizes and session counts. Prints a Markdown table (also written to
# benches/compare.md, or $COMPARE_OUT). Installs Postfix with apt-get when missing; runs as
# root (it writes /etc/postfix/main.cf). Loopback only.
#
#   bash benches/compare.sh                 # full: 2, 20, 200 KiB × 1 and 16 sessions
#   QUICK=1 bash benches/compare.sh         # smoke: 2 KiB × 1 and 16 sessions, few messages
#
# Each row runs the three paths REPEATS times, alternating (a) (b) (c), and reports medians:
# the machine may be shared, and alternating short runs spreads its noise over all three
# paths. "added p99" is conbool's end-of-data→reply p99 minus the next hop's alone, per
# repeat (the relay's own share of the latency the client sees).
#
# PIN=1 (on 2+ cores, with taskset) runs the replayer and the sink on CPU 0 and
# the relay under test (conbool with one worker per remaining CPU, or Postfix) on the other
# CPUs, as a load generator and the system under test are kept apart in any benchmark:
# otherwise the relay's throughput measures how three processes share two cores. The default,
# PIN=0, lets the scheduler place everything (pinning needs the machine to itself: a build
# sharing the relay's one CPU halves it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
OUT=${COMPARE_OUT:-$ROOT/benches/compare.md}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    postfix stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

SINK_PORT=2626 RELAY_PORT=2625 POSTFIX_PORT=2627
if [ -n "${QUICK:-}" ]; then
    SIZES="2" SESSIONS="1 16" MESSAGES=${MESSAGES:-3000} REPEATS=${REPEATS:-3}
else
    SIZES=${SIZES:-"2 20 200"} SESSIONS=${SESSIONS:-"1 16"} MESSAGES=${MESSAGES:-20000}
    REPEATS=${REPEATS:-3}
fi

if ! command -v postfix >/dev/null; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null
fi
NCPU=$(nproc)
if [ "${PIN:-0}" = 1 ] && [ "$NCPU" -ge 2 ]; then
    LOAD=(taskset -c 0) SUT=(taskset -c "1-$((NCPU - 1))") RELAY_WORKERS=$((NCPU - 1))
    PLACEMENT="replayer and sink on CPU 0, relay on CPUs 1-$((NCPU - 1))"
else
    LOAD=() SUT=() RELAY_WORKERS=0 PLACEMENT="unpinned"
fi
cargo build --release --quiet
BIN="$ROOT/target/release/conbool"

# shellcheck source=benches/common.sh
source "$ROOT/benches/common.sh"

# cpu_total_ns: CPU time of the whole machine so far, in nanoseconds: the root cgroup's
# `cpuacct.usage` where there is one (cgroup v1), else `usage_usec` of cgroup v2's `cpu.stat`,
# else /proc/stat's jiffies (user+nice+system+irq+softirq, 10 ms steps).
cpu_total_ns() {
    if [ -r /sys/fs/cgroup/cpuacct/cpuacct.usage ]; then
        cat /sys/fs/cgroup/cpuacct/cpuacct.usage
    elif [ -r /sys/fs/cgroup/cpu.stat ]; then
        awk '/^usage_usec /{printf "%.0f\n", $2 * 1000}' /sys/fs/cgroup/cpu.stat
    else
        awk -v hz="$(getconf CLK_TCK)" '/^cpu /{printf "%.0f\n", ($2+$3+$4+$7+$8) * 1e9 / hz}' /proc/stat
    fi
}

postfix_setup() {
    postfix stop >/dev/null 2>&1 || true
    cat >/etc/postfix/main.cf <<MAIN
compatibility_level = 3.6
myhostname = proxy.conbool-bench.invalid
inet_interfaces = loopback-only
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_tls_security_level = none
default_process_limit = 200
MAIN
    postconf -F '*/*/chroot = n'
    postconf -M "$POSTFIX_PORT/inet=$POSTFIX_PORT inet n - n - - smtpd"
    postconf -P "$POSTFIX_PORT/inet/smtpd_proxy_filter=127.0.0.1:$SINK_PORT"
    "${SUT[@]}" postfix start >/dev/null
    wait_port "$POSTFIX_PORT"
}

# run_one NAME PORT CORPUS SESSIONS SINK_PID RELAY_PID → one table row's numbers
run_one() {
    local name=$1 port=$2 corpus=$3 sessions=$4 sink_pid=$5 relay_pid=$6
    local c0 s0 r0 c1 s1 r1 json
    c0=$(cpu_total_ns); s0=$(proc_run_ns "$sink_pid"); r0=$( [ -n "$relay_pid" ] && proc_run_ns "$relay_pid" || echo 0)
    json=$("${LOAD[@]}" "$BIN" replay --to "127.0.0.1:$port" --corpus "$corpus" --sessions "$sessions" \
        --messages "$MESSAGES" --json --quiet)
    c1=$(cpu_total_ns); s1=$(proc_run_ns "$sink_pid"); r1=$( [ -n "$relay_pid" ] && proc_run_ns "$relay_pid" || echo 0)
    python3 - "$name" "$json" "$((c1 - c0))" "$((s1 - s0))" "$((r1 - r0))" <<'PY'
import json, sys
name, rep = sys.argv[1], json.loads(sys.argv[2])
total, sink, relay = (int(x) for x in sys.argv[3:6])
acc = max(rep["accepted"], 1)
# Relay CPU: the conbool process when known; otherwise everything but the sink and replay
# (the replayer's own CPU is not in /proc after it exits, so it is estimated from run (a)).
print(json.dumps({"name": name, "msgs": rep["msgs_per_sec"], "p99_us": rep["latency_us"]["end_of_data"]["p99"],
                  "accepted": rep["accepted"], "attempted": rep["attempted"],
                  "total_ms": total / 1e6 / acc, "sink_ms": sink / 1e6 / acc,
                  "relay_ms": relay / 1e6 / acc}))
PY
}

echo "compare: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $PLACEMENT" | tee "$WORK/header"
"${LOAD[@]}" "$BIN" sink --listen "127.0.0.1:$SINK_PORT" >"$WORK/sink.log" 2>&1 &
SINK_PID=$!; PIDS+=("$SINK_PID")
"${SUT[@]}" "$BIN" run --workers "$RELAY_WORKERS" --listen "127.0.0.1:$RELAY_PORT" --next-hop "127.0.0.1:$SINK_PORT" >/dev/null 2>"$WORK/relay.log" &
RELAY_PID=$!; PIDS+=("$RELAY_PID")
wait_port "$SINK_PORT"; wait_port "$RELAY_PORT"
postfix_setup

ROWS="$WORK/rows"
: >"$ROWS"
for kib in $SIZES; do
    corpus="$WORK/corpus-$kib"
    make_corpus "$corpus" "$kib"
    for s in $SESSIONS; do
        for _ in $(seq 1 "$REPEATS"); do
            a=$(run_one direct "$SINK_PORT" "$corpus" "$s" "$SINK_PID" "")
            b=$(run_one conbool "$RELAY_PORT" "$corpus" "$s" "$SINK_PID" "$RELAY_PID")
            c=$(run_one postfix "$POSTFIX_PORT" "$corpus" "$s" "$SINK_PID" "")
            echo "$kib $s $a $b $c" >>"$ROWS"
        done
        echo "  ${kib} KiB × $s sessions done" >&2
    done
done

python3 - "$ROWS" "$WORK/header" "$REPEATS" >"$OUT" <<'PY'
import json, sys
from statistics import median
lines = open(sys.argv[1]).read().splitlines()
print(open(sys.argv[2]).read().strip() + f", medians of {sys.argv[3]} alternating runs")
print()
print("| size | sessions | direct msg/s | conbool msg/s | postfix proxy msg/s | conbool ÷ direct | conbool ÷ postfix "
      "| conbool CPU ms/msg | sink CPU ms/msg | postfix CPU ms/msg | p99 end of data µs direct / conbool / postfix | added p99 µs |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
groups = {}
for line in lines:
    kib, s, rest = line.split(" ", 2)
    dec = json.JSONDecoder()
    objs, i = [], 0
    while i < len(rest):
        while i < len(rest) and rest[i] == " ":
            i += 1
        o, i = dec.raw_decode(rest, i)
        objs.append(o)
    groups.setdefault((kib, s), []).append(objs)
for (kib, s), reps in groups.items():
    def med(f):
        return median(f(a, b, c) for a, b, c in reps)
    # Postfix's CPU: all CPU in its run minus the sink's minus the replayer's (taken as the
    # direct run's total minus its sink's).
    def pf_ms(a, b, c):
        return max(c["total_ms"] - c["sink_ms"] - (a["total_ms"] - a["sink_ms"]), 0)
    lost = "" if all(o["accepted"] == o["attempted"] for r in reps for o in r) else " (some not accepted)"
    print(f"| {kib} KiB | {s} | {med(lambda a, b, c: a['msgs']):.0f} | {med(lambda a, b, c: b['msgs']):.0f} "
          f"| {med(lambda a, b, c: c['msgs']):.0f} | {med(lambda a, b, c: b['msgs'] / a['msgs']):.2f} "
          f"| {med(lambda a, b, c: b['msgs'] / max(c['msgs'], 1)):.2f} | {med(lambda a, b, c: b['relay_ms']):.3f} "
          f"| {med(lambda a, b, c: a['sink_ms']):.3f} | {med(pf_ms):.3f} "
          f"| {med(lambda a, b, c: a['p99_us']):.0f} / {med(lambda a, b, c: b['p99_us']):.0f} / {med(lambda a, b, c: c['p99_us']):.0f} "
          f"| {med(lambda a, b, c: b['p99_us'] - a['p99_us']):.0f}{lost} |")
PY
cat "$OUT"
