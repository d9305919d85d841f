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

# proc_cpu PID: the process's CPU jiffies so far (user+system).
proc_cpu() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# proc_run_ns PID: nanoseconds the process's threads have run on a CPU so far (schedstat):
# finer than proc_cpu's jiffies, which count a run of a second in tens. `%.0f`, not `%d`:
# mawk's `%d` stops at 2^31.
proc_run_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }

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
