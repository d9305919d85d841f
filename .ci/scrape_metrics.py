"""Scrapes conbool's /metrics after the interop checks and checks the exposition.

Usage: scrape_metrics.py HOST:PORT NAME>MIN [NAME>MIN ...]

Each NAME is a sample as it appears in the exposition (with labels, e.g.
conbool_verdicts_total{verdict="ham"}); its value must be greater than MIN. The text is parsed
with prometheus_client's parser when it is installed (Debian: python3-prometheus-client), and
always with a strict parser of our own: every line is a HELP/TYPE comment or a sample, every
sample's metric has a TYPE, histogram buckets are cumulative and end at +Inf == _count.
"""
import re
import sys
import urllib.request

SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)?\})? '
    r'(-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$')


def strict_parse(text):
    types, samples = {}, {}
    for n, line in enumerate(text.split("\n"), 1):
        if line == "":
            continue
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            if kind not in ("counter", "gauge", "histogram", "summary", "untyped"):
                raise ValueError(f"line {n}: bad type {kind!r}")
            types[name] = kind
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError(f"line {n}: not a sample: {line!r}")
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in types and base not in types:
            raise ValueError(f"line {n}: {name} has no TYPE")
        if name.endswith("_total") and types.get(name) not in (None, "counter") :
            raise ValueError(f"line {n}: {name} is not a counter")
        series = line.rsplit(" ", 1)[0]
        if series in samples:
            raise ValueError(f"line {n}: duplicate series {series}")
        samples[series] = float(m.group(3))
    for name, kind in types.items():
        if kind != "histogram":
            continue
        buckets = [(k, v) for k, v in samples.items() if k.startswith(name + "_bucket{")]
        values = [v for _, v in buckets]
        if values != sorted(values) or not buckets[-1][0].endswith('le="+Inf"}'):
            raise ValueError(f"{name}: buckets not cumulative or no +Inf")
        if buckets[-1][1] != samples[name + "_count"]:
            raise ValueError(f"{name}: +Inf bucket != _count")
    return samples


def main():
    addr, checks = sys.argv[1], sys.argv[2:]
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode("utf-8")
    if not ctype.startswith("text/plain; version=0.0.4"):
        sys.exit(f"{addr}: content type {ctype!r}")
    samples = strict_parse(text)
    try:
        from prometheus_client.parser import text_string_to_metric_families
        families = list(text_string_to_metric_families(text))
        print(f"{addr}: prometheus_client parsed {len(families)} metric families")
    except ImportError:
        print(f"{addr}: prometheus_client not installed; strict parser only")
    failed = []
    for check in checks:
        name, minimum = check.rsplit(">", 1)
        value = samples.get(name)
        if value is None or not value > float(minimum):
            failed.append(f"{name} = {value}, want > {minimum}")
    print(f"{addr}: {len(samples)} samples; " + ", ".join(
        f"{c.rsplit('>', 1)[0]}={samples.get(c.rsplit('>', 1)[0])}" for c in checks))
    if failed:
        sys.exit(f"{addr}: " + "; ".join(failed))


if __name__ == "__main__":
    main()
