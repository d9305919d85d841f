# Shell helpers shared by benches/compare.sh and benches/tls_relay.sh (sourced).

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
