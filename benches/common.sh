# Shell helpers shared by the bench scripts (sourced).

# bench_scratch: a scratch directory in WORK and a PIDS array; on exit every process in PIDS
# is killed and WORK removed.
bench_scratch() {
    WORK=$(mktemp -d)
    PIDS=()
    trap bench_cleanup EXIT
}
bench_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}

# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s at most).
wait_port() {
    local i
    for i in $(seq 1 100); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

# proc_run_ns PID: nanoseconds the process's threads have run on a CPU so far (schedstat):
# finer than /proc/PID/stat's jiffies, which count a run of a second in tens. `%.0f`, not
# `%d`: mawk's `%d` stops at 2^31.
proc_run_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }

# replay_run NAME PORT PID [replay flags...]: `conbool replay` ($BIN) of $WORK/corpus, $SESSIONS
# sessions, $MESSAGES messages, to 127.0.0.1:PORT, as one JSON object: name, msgs (a second),
# accepted, attempted, p99_us (end of data) and cpu_ms (PID's run time a message accepted).
replay_run() {
    local name=$1 port=$2 pid=$3 r0 r1 json
    shift 3
    r0=$(proc_run_ns "$pid")
    json=$("$BIN" replay --to "127.0.0.1:$port" --corpus "$WORK/corpus" --sessions "$SESSIONS" \
        --messages "$MESSAGES" --json --quiet "$@")
    r1=$(proc_run_ns "$pid")
    python3 - "$name" "$json" "$((r1 - r0))" <<'PY'
import json, sys
name, rep, cpu = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
acc = max(rep["accepted"], 1)
print(json.dumps({"name": name, "msgs": rep["msgs_per_sec"], "accepted": rep["accepted"],
                  "attempted": rep["attempted"],
                  "p99_us": rep["latency_us"]["end_of_data"]["p99"],
                  "cpu_ms": cpu / 1e6 / acc}))
PY
}

# make_corpus DIR KIB: 20 plain-text messages of about KIB KiB each in DIR.
make_corpus() {
    local dir=$1 kib=$2 i
    mkdir -p "$dir"
    for i in $(seq 1 20); do
        python3 - "$kib" "$i" >"$dir/$i.eml" <<'PY'
import sys, random
kib, n = int(sys.argv[1]), int(sys.argv[2])
random.seed(n)
words = "the quick brown fox jumps over lazy dogs invoice meeting report budget review".split()
head = (f"From: sender{n}@example.com\r\nTo: rcpt@example.com\r\nSubject: message {n}\r\n"
        f"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{n}.{kib}@example.com>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
body = []
size = len(head)
while size < kib * 1024:
    line = " ".join(random.choice(words) for _ in range(12)) + "\r\n"
    body.append(line)
    size += len(line)
sys.stdout.write(head + "".join(body))
PY
    done
}
