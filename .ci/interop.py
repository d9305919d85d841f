#!/usr/bin/env python3
"""Interop checks against real peers, run by .ci/run after it has started:

    Postfix (front, port 25) --relayhost--> conbool (2525) --> Postfix smtpd (2700)
                                                                  --> pipe into SAVE_DIR

and a second conbool (2535) that trusts only 127.0.0.2 (so 127.0.0.1 is an untrusted client),
a third (2545) that offers STARTTLS, and two (27410 with a client certificate, 27411 without)
in front of a Postfix smtpd (27400) that requires a verified client certificate.

Each saved file is named <queue id>.<envelope sender>.eml. Prints one line per check and a
closing `interop: N passed, M failed`; exits 1 on any failure.
"""

import glob
import os
import re
import smtplib
import socket
import subprocess
import sys
import time

SAVE_DIR = os.environ["SAVE_DIR"]
CORPUS = os.environ["CORPUS_DIR"]
SHARED = os.environ.get("SHARED_CORPUS", "")
FRONT = ("127.0.0.1", 25)
RELAY = ("127.0.0.1", 2525)
STRICT = ("127.0.0.1", 2535)
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name}: {detail}")


def saved():
    """Saved messages, oldest first."""
    return sorted(glob.glob(os.path.join(SAVE_DIR, "*.eml")), key=os.path.getmtime)


def wait_for(count, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if len(saved()) >= count:
            return True
        time.sleep(0.2)
    return False


def newer_than(before):
    """Messages saved since the `before` listing."""
    old = set(before)
    return [p for p in saved() if p not in old]


def read(path):
    """A saved message with CRLF line ends (Postfix's pipe writes bare LF)."""
    with open(path, "rb") as f:
        return crlf(f.read())


def unfold(message):
    """Header continuation lines joined to the line before (one space for the fold)."""
    return re.sub(rb"\r\n[ \t]+", b" ", message)


def read_raw(path):
    with open(path, "rb") as f:
        return f.read()


def corpus_files(limit):
    """The first `limit` messages of the bundled corpus."""
    files = sorted(glob.glob(os.path.join(CORPUS, "*.eml")))
    return files[:limit]


def crlf(raw):
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    return b"\r\n".join(lines)


def raw_session(addr, chunks, source=None):
    """Sends raw bytes (after reading the greeting) and returns everything the server said."""
    s = socket.create_connection(addr, timeout=30, source_address=source)
    s.settimeout(30)
    out = s.recv(4096)
    for c in chunks:
        s.sendall(c)
        time.sleep(0.05)
    s.sendall(b"QUIT\r\n")
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        pass
    s.close()
    return out


def main():
    # 1. The corpus through Postfix → conbool → Postfix.
    files = corpus_files(60)
    listing = saved()
    with smtplib.SMTP(*FRONT, timeout=30) as s:
        for f in files:
            s.sendmail("sender@example.com", ["rcpt@example.com"], read(f))
    arrived = wait_for(len(listing) + len(files))
    new = newer_than(listing)
    check("postfix front → conbool → postfix next hop delivers every message", arrived,
          f"{len(new)} of {len(files)} arrived")
    loop = [p for p in new if b"X-Conbool-example-com: true\r\n" not in read(p)]
    check("every delivered message carries the loop header", not loop, f"{len(loop)} without")
    flags = [p for p in new if b"X-Conbool-Flag: " not in read(p)]
    check("every delivered message carries X-Conbool-Flag", not flags, f"{len(flags)} without")
    gtube_in = sum(1 for f in files if GTUBE in read(f))
    gtube_flagged = sum(1 for p in new if GTUBE in read(p) and b"X-Conbool-Flag: YES" in read(p))
    check("GTUBE messages are flagged YES", gtube_flagged == gtube_in,
          f"{gtube_flagged} of {gtube_in}")

    # 2. smtplib straight to conbool, with a forged flag that must not survive.
    listing = saved()
    msg = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: smtplib\r\n"
           b"X-Conbool-Flag: NO\r\n\r\n" + GTUBE + b"\r\n")
    with smtplib.SMTP(*RELAY, timeout=30) as s:
        s.ehlo("smtplib.test")
        check("conbool advertises PIPELINING, CHUNKING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES",
              all(s.has_extn(e) for e in ["pipelining", "chunking", "size", "8bitmime",
                                          "enhancedstatuscodes"]), str(s.esmtp_features))
        s.sendmail("a@example.com", ["b@example.com"], msg)
    ok = wait_for(len(listing) + 1)
    got = read(newer_than(listing)[-1]) if ok else b""
    check("smtplib → conbool: forged X-Conbool-Flag removed, GTUBE flagged YES",
          ok and got.count(b"X-Conbool-Flag:") == 1 and b"X-Conbool-Flag: YES" in got,
          got[:400])

    # 3. swaks straight to conbool, pipelined.
    listing = saved()
    r = subprocess.run(["swaks", "--server", "127.0.0.1:2525", "--from", "a@example.com",
                        "--to", "c@example.com", "--pipeline", "--helo", "swaks.test",
                        "--header", "Subject: swaks"], capture_output=True, text=True)
    check("swaks --pipeline → conbool → postfix", r.returncode == 0 and wait_for(len(listing) + 1),
          r.stdout[-600:] + r.stderr[-300:])

    # 4. Untrusted client to a foreign domain: relay denied; to the tenant domain: accepted.
    out = raw_session(STRICT, [b"EHLO untrusted.test\r\n", b"MAIL FROM:<x@foreign.test>\r\n",
                               b"RCPT TO:<victim@foreign.test>\r\n"])
    check("untrusted client relaying to a foreign domain gets 554 5.7.1",
          b"554 5.7.1" in out, out.decode(errors="replace")[-300:])
    listing = saved()
    with smtplib.SMTP(*STRICT, timeout=30) as s:
        s.sendmail("x@foreign.test", ["rcpt@example.com"],
                   b"X-Conbool-example-com: true\r\nSubject: inbound\r\n\r\nhello\r\n")
    ok = wait_for(len(listing) + 1)
    got = read(newer_than(listing)[-1]) if ok else b""
    check("untrusted client → tenant domain delivered, forged loop header replaced by ours",
          ok and got.count(b"X-Conbool-example-com: true") == 1, got[:400])

    # 5. SMTP smuggling payloads through conbool to Postfix: never a second message, never a
    #    smuggled sender.
    payloads = sorted(glob.glob(os.path.join(SHARED, "smtp/smuggling/payloads/*.data"))) if SHARED else []
    for p in payloads:
        listing = saved()
        out = raw_session(RELAY, [b"EHLO smuggler.test\r\n",
                                  b"MAIL FROM:<test@sender.example>\r\n",
                                  b"RCPT TO:<victim@example.com>\r\n", b"DATA\r\n", read_raw(p)])
        # An accepted payload arrives within seconds; a second (smuggled) message would too.
        wait_for(len(listing) + 1, 10)
        time.sleep(0.5)
        new = newer_than(listing)
        smuggled = [n for n in new if "smuggled" in os.path.basename(n)]
        check(f"smuggling {os.path.basename(p)}: at most one message, no smuggled sender",
              len(new) <= 1 and not smuggled, f"{len(new)} messages, smuggled={smuggled}")
    if not payloads:
        print("skipping the smuggling payloads: no shared corpus")

    # 6. STARTTLS: openssl verifies the relay's chain and name; swaks sends over TLS.
    ca = os.environ.get("TLS_CA")
    if ca:
        r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect", "127.0.0.1:2545",
                            "-CAfile", ca, "-verify_hostname", "mail.conbool.com",
                            "-verify_return_error", "-brief"],
                           input="QUIT\n", capture_output=True, text=True, timeout=30)
        out = r.stdout + r.stderr
        check("openssl s_client -starttls smtp verifies the relay's certificate",
              r.returncode == 0 and "Verification: OK" in out, out[-600:])
        listing = saved()
        r = subprocess.run(["swaks", "--server", "127.0.0.1:2545", "--tls", "--tls-verify",
                            "--tls-ca-path", ca, "--tls-sni", "mail.conbool.com",
                            "--from", "a@example.com", "--to", "tls@example.com",
                            "--header", "Subject: swaks over TLS"],
                           capture_output=True, text=True, timeout=60)
        ok = r.returncode == 0 and wait_for(len(listing) + 1)
        got = read(newer_than(listing)[-1]) if ok else b""
        check("swaks --tls → conbool: delivered, Received says ESMTPS with the cipher",
              ok and b"with ESMTPS" in got and b"(using TLSv1." in got,
              (r.stdout[-400:] + r.stderr[-300:]) if not ok else got[:500])

    # 7. Postfix as a next hop that requires a client certificate (smtpd_tls_req_ccert = yes),
    #    verified by name under next_hop_tls = "verify": conbool on 27410 presents its client
    #    certificate with the intermediate, conbool on 27411 has none.
    if ca:
        listing = saved()
        r = subprocess.run(["swaks", "--server", "127.0.0.1:27410", "--from", "a@example.com",
                            "--to", "ccert@example.com", "--header", "Subject: client certificate"],
                           capture_output=True, text=True, timeout=60)
        ok = r.returncode == 0 and wait_for(len(listing) + 1)
        got = unfold(read(newer_than(listing)[-1])) if ok else b""
        verified = b'(Client CN "mail.conbool.com", Issuer "conbool CI intermediate" (verified OK))'
        check("conbool → postfix (smtpd_tls_req_ccert): delivered, postfix verified the client "
              "certificate and its chain", ok and verified in got,
              (r.stdout[-400:] + r.stderr[-300:]) if not ok else got[:700])
        log = open("/var/log/conbool-ci-postfix.log", errors="replace").read()
        check("postfix logged a trusted TLS connection from conbool",
              "Trusted TLS connection established from" in log, log[-600:])

        listing = saved()
        r = subprocess.run(["swaks", "--server", "127.0.0.1:27411", "--from", "a@example.com",
                            "--to", "nocert@example.com", "--header", "Subject: no client certificate"],
                           capture_output=True, text=True, timeout=60)
        out = r.stdout + r.stderr
        refused = re.search(r"^<\*\* 4\d\d ", out, re.M) is not None
        arrived = wait_for(len(listing) + 1, 5)
        check("without a client certificate postfix refuses and conbool's client hears a 4xx",
              r.returncode != 0 and refused and not arrived, out[-600:])

    print(f"interop: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
