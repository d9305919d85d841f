#!/usr/bin/env bash
# Relay throughput with TLS on both sides against plain text, in one run of the same harness:
#   plain: replay → conbool → sink
#   tls:   replay --starttls → conbool ([tls]) → sink --tls-cert (next_hop_tls = "require")
# Each relay is its own process; between runs only TLS differs. Prints msg/s, p99 end-of-data
# latency and conbool's CPU per message for each, and the ratios. Loopback only; an openssl
# P-256 certificate is made for the run.
#
#   bash benches/tls_relay.sh                          # 2 KiB × 16 sessions, 10000 messages
#   KIB=20 SESSIONS=4 MESSAGES=4000 bash benches/tls_relay.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
KIB=${KIB:-2} SESSIONS=${SESSIONS:-16} MESSAGES=${MESSAGES:-10000} ROUNDS=${ROUNDS:-2}
BASE=${PORT_BASE:-27500}
PLAIN_SINK=$BASE PLAIN_RELAY=$((BASE + 1)) TLS_SINK=$((BASE + 2)) TLS_RELAY=$((BASE + 3))
# shellcheck source=benches/common.sh
source "$ROOT/benches/common.sh"
bench_scratch

[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet
BIN="$ROOT/target/release/conbool"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=mail.conbool.com -addext "subjectAltName=DNS:mail.conbool.com,IP:127.0.0.1" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

make_corpus "$WORK/corpus" "$KIB"

relay_config() { # relay_config LISTEN NEXT_HOP TLS(0|1)
    echo "[server]"
    echo "listen = [\"127.0.0.1:$1\"]"
    echo "hostname = \"mail.conbool.com\""
    if [ "$3" = 1 ]; then
        printf '[tls]\ncert = "%s"\nkey = "%s"\n' "$WORK/cert.pem" "$WORK/key.pem"
    fi
    echo "[[tenant]]"
    echo "name = \"example.com\""
    echo "next_hop = \"127.0.0.1:$2\""
    echo "trusted_networks = [\"127.0.0.0/8\"]"
    if [ "$3" = 1 ]; then echo 'next_hop_tls = "require"'; else echo 'next_hop_tls = "none"'; fi
}
relay_config "$PLAIN_RELAY" "$PLAIN_SINK" 0 >"$WORK/plain.toml"
relay_config "$TLS_RELAY" "$TLS_SINK" 1 >"$WORK/tls.toml"

"$BIN" sink --listen "127.0.0.1:$PLAIN_SINK" >/dev/null 2>&1 &
PIDS+=($!)
"$BIN" sink --listen "127.0.0.1:$TLS_SINK" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" \
    >/dev/null 2>&1 &
PIDS+=($!)
"$BIN" run --config "$WORK/plain.toml" >/dev/null 2>"$WORK/plain.log" &
PLAIN_PID=$!; PIDS+=("$PLAIN_PID")
"$BIN" run --config "$WORK/tls.toml" >/dev/null 2>"$WORK/tls.log" &
TLS_PID=$!; PIDS+=("$TLS_PID")
for p in "$PLAIN_SINK" "$TLS_SINK" "$PLAIN_RELAY" "$TLS_RELAY"; do wait_port "$p"; done

echo "tls_relay: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $KIB KiB × $SESSIONS sessions × $MESSAGES messages, $ROUNDS alternating rounds"
ROWS="$WORK/rows"
: >"$ROWS"
for round in $(seq 1 "$ROUNDS"); do
    replay_run plain "$PLAIN_RELAY" "$PLAIN_PID" >>"$ROWS"
    replay_run tls "$TLS_RELAY" "$TLS_PID" --starttls --tls-name mail.conbool.com >>"$ROWS"
done
python3 - "$ROWS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| run | msg/s | p99 end of data µs | conbool CPU ms/msg | accepted/attempted |")
print("|---|---|---|---|---|")
for r in rows:
    print(f"| {r['name']} | {r['msgs']:.0f} | {r['p99_us']} | {r['cpu_ms']:.3f} | {r['accepted']}/{r['attempted']} |")
best = lambda n, k, f: f(r[k] for r in rows if r["name"] == n)
plain, tls = best("plain", "msgs", max), best("tls", "msgs", max)
pc, tc = best("plain", "cpu_ms", min), best("tls", "cpu_ms", min)
print(f"\ntls ÷ plain throughput (best of each): {tls / plain:.2f}; conbool CPU per message "
      f"tls ÷ plain (least of each): {tc / max(pc, 1e-9):.2f} ({tc:.3f} vs {pc:.3f} ms)")
PY
