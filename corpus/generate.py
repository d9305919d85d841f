#!/usr/bin/env python3
"""Generate conbool's bundled test corpus: about 300 messages in varied shapes and sizes.

Everything here is written by the project itself (no third-party mail), deterministic from
SEED, standard library only, CRLF line endings throughout. Run from anywhere:

    python3 corpus/generate.py

It deletes the old *.eml files in this directory, writes NNNN-<kind>.eml and MANIFEST.tsv.
MIME is built by hand (not with the email package) so the bytes never depend on the Python
version's folding rules.
"""

import base64
import os
import random
import sys
import textwrap

SEED = 20240607
HERE = os.path.dirname(os.path.abspath(__file__))
CRLF = b"\r\n"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
KIB = 1024

# (kind, count): the shape of the corpus. Sums to 300.
PLAN = [
    ("plain", 78),
    ("plain_latin1", 18),
    ("plain_utf8", 18),
    ("qp", 18),
    ("alternative", 50),
    ("attachment_pdf", 18),
    ("attachment_zip", 10),
    ("attachment_exe", 3),
    ("attachment_large", 5),
    ("encoded_subject", 12),
    ("long_headers", 10),
    ("long_line", 2),
    ("calendar", 10),
    ("dsn", 10),
    ("dot_lines", 12),
    ("reply", 11),
    ("spam_gtube", 8),
    ("spam_phrases", 7),
]

SPAM_KINDS = {"spam_gtube", "spam_phrases"}

PEOPLE = [
    ("Alice Archer", "alice"), ("Bob Baker", "bob"), ("Carol Chen", "carol"),
    ("Dave Dunn", "dave"), ("Erin Evans", "erin"), ("Frank Fischer", "frank"),
    ("Grace Gómez", "grace"), ("Heidi Hansen", "heidi"), ("Ivan Ivanov", "ivan"),
    ("Judy Jörgensen", "judy"), ("Mallory Moss", "mallory"), ("Niaj Nair", "niaj"),
    ("Olivia O'Neil", "olivia"), ("Peggy Park", "peggy"), ("Rupert Russo", "rupert"),
    ("Sybil Sørensen", "sybil"), ("Trent Tanaka", "trent"), ("Victor Varga", "victor"),
    ("Walter Wu", "walter"), ("Zoë Zimmermann", "zoe"), ("Accounts", "accounts"),
    ("Sales Team", "sales"), ("IT Helpdesk", "helpdesk"), ("Facilities", "facilities"),
]

WORDS = """
the quarterly report meeting agenda schedule budget review project deadline customer invoice
team update office policy travel expense approval contract draft proposal feedback release
server migration backup network printer password account access request support ticket
holiday calendar lunch training workshop presentation slides numbers forecast revenue
shipment warehouse order delivery supplier payment reminder overdue confirm attached please
thanks regards tomorrow monday friday morning afternoon week month quarter year plan
discussion notes minutes action items follow up question answer issue resolved pending
priority urgent normal low high version document spreadsheet folder share link permission
we you they it is are was were will would could should can may might must need want
and or but so because while after before during until since although however therefore
a an this that these those our your their my his her its some any every each all most
new old good better best quick short long final first last next previous current open
""".split()

LATIN1_WORDS = """
café naïve façade garçon crème brûlée déjà vu Größe Straße über Mädchen schön Grüße
año señor mañana niño corazón canción señal révision élève où là-bas très été
""".split()

UTF8_WORDS = """
日本語 東京 会議 予定 Ελληνικά καλημέρα Русский привет отчёт встреча
中文 你好 报告 한국어 안녕하세요 ☃ € — “quoted” naïve Zoë 🙂 ✓
""".split()

SPAM_LINES = [
    "FREE money!!! You have been selected as our lucky WINNER of $1,000,000 cash prize.",
    "Click here to claim your prize now: http://win-big.example.net/claim?id=000",
    "Cheap Viagra and Cialis, 100% GUARANTEED, no prescription needed!!!",
    "Act now! This limited time offer expires TODAY. Risk free, no credit check.",
    "Dear friend, I am a prince with $25,000,000 USD to transfer to your bank account.",
    "Earn $$$ working from home, make money fast, double your income in 30 days.",
    "Lose weight fast with our miracle pill, 100% natural, as seen on TV.",
    "To unsubscribe from this mailing list click here and reply REMOVE in the subject.",
]

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


# ---------------------------------------------------------------- small helpers


def rfc5322_date(index):
    """A fixed date: 2024-01-01 plus `index` times 2h37m, in UTC (no time module, no locale)."""
    minutes = index * 157
    day_no = minutes // (24 * 60)
    hh, mm = divmod(minutes % (24 * 60), 60)
    # Civil date from days since 2024-01-01 (a Monday).
    y, m, d = 2024, 1, 1 + day_no
    while True:
        leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
        mdays = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]
        if d <= mdays:
            break
        d -= mdays
        m += 1
        if m > 12:
            m, y = 1, y + 1
    return "%s, %02d %s %d %02d:%02d:00 +0000" % (
        DAYS[day_no % 7], d, MONTHS[m - 1], y, hh, mm)


def person(r):
    return r.choice(PEOPLE)


def addr(p):
    return "%s@example.com" % p[1]


def display(p, encode=False):
    """`Name <addr>`; non-ASCII names become RFC 2047 words; `encode` forces it."""
    name, _ = p
    if encode or any(ord(c) > 127 for c in name):
        name = encoded_word(name, "UTF-8", "B" if len(name) % 2 else "Q")
    elif "'" in name or "." in name:
        name = '"%s"' % name
    return "%s <%s>" % (name, addr(p))


def encoded_word(text, charset, enc):
    raw = text.encode(charset)
    if enc == "B":
        return "=?%s?B?%s?=" % (charset, base64.b64encode(raw).decode("ascii"))
    out = []
    for b in raw:
        c = chr(b)
        if b == 0x20:
            out.append("_")
        elif c.isalnum() and b < 128:
            out.append(c)
        else:
            out.append("=%02X" % b)
    return "=?%s?Q?%s?=" % (charset, "".join(out))


def encoded_subject(text, charset, enc):
    """Splits long text into several encoded-words, folded one per line (RFC 2047 §2)."""
    words, piece = [], ""
    for ch in text:
        piece += ch
        if len(piece.encode(charset)) >= 30:
            words.append(encoded_word(piece, charset, enc))
            piece = ""
    if piece:
        words.append(encoded_word(piece, charset, enc))
    return "\r\n ".join(words)


def fold(name, value, width=76):
    """Folds `name: value` at spaces so no line exceeds `width` where a space allows."""
    line = name + ": "
    out = []
    for word in value.split(" "):
        if len(line) + len(word) > width and line.strip() and not line.endswith(": "):
            out.append(line.rstrip(" "))
            line = " "
        line += word + " "
    out.append(line.rstrip(" "))
    return "\r\n".join(out)


def sentence(r, words=WORDS, lo=6, hi=18):
    ws = [r.choice(words) for _ in range(r.randint(lo, hi))]
    s = " ".join(ws)
    return s[0].upper() + s[1:] + r.choice([".", ".", ".", "?", "!"])


def paragraph(r, words=WORDS):
    text = " ".join(sentence(r, words) for _ in range(r.randint(2, 7)))
    return textwrap.fill(text, width=72, break_long_words=False, break_on_hyphens=False)


ASCII_FOLD = str.maketrans({"ó": "o", "ö": "o", "ø": "o", "ë": "e", "é": "e"})


def text_body(r, target_chars, words=WORDS, signature=None):
    """Paragraphs of text until about `target_chars` long; lines joined with LF. Names in the
    greeting and signature are folded to ASCII so us-ascii bodies stay 7-bit."""
    paras = ["Hi %s," % r.choice(PEOPLE)[0].split()[0].translate(ASCII_FOLD)]
    size = 0
    while size < target_chars:
        p = paragraph(r, words)
        paras.append(p)
        size += len(p) + 2
    paras.append("Best regards,\n%s" % (signature or r.choice(PEOPLE)[0]).translate(ASCII_FOLD))
    return "\n\n".join(paras)


def crlf(text_or_bytes, charset="utf-8"):
    """LF-joined text (str or bytes) to CRLF bytes."""
    b = text_or_bytes.encode(charset) if isinstance(text_or_bytes, str) else text_or_bytes
    return CRLF.join(b.split(b"\n"))


def b64_lines(data):
    s = base64.b64encode(data)
    return CRLF.join(s[i:i + 76] for i in range(0, len(s), 76))


def qp_encode(raw):
    """Quoted-printable (RFC 2045 §6.7) of LF-separated bytes, CRLF output, soft breaks at 76."""
    out_lines = []
    for line in raw.split(b"\n"):
        enc = []
        for i, b in enumerate(line):
            last = i == len(line) - 1
            if (33 <= b <= 126 and b != 61) or (b in (9, 32) and not last):
                enc.append(chr(b))
            else:
                enc.append("=%02X" % b)
        cur = ""
        for tok in enc:
            if len(cur) + len(tok) > 75:
                out_lines.append(cur + "=")
                cur = ""
            cur += tok
        out_lines.append(cur)
    return CRLF.join(l.encode("ascii") for l in out_lines)


def boundary(r, index, n=0):
    return "=_conbool_%04d_%d_%08x" % (index, n, r.getrandbits(32))


def fake_bytes(r, magic, size):
    return magic + r.randbytes(max(0, size - len(magic)))


def size_target(r, kind):
    if kind == "attachment_large":
        return None  # chosen by the caller
    if kind.startswith("attachment"):
        return int(16 * KIB * (120 / 16) ** r.random())
    u = r.random()
    if u < 0.08:
        return r.randint(1 * KIB, 2 * KIB)
    if u < 0.92:
        return int(2 * KIB * 10 ** r.random())  # log-uniform 2..20 KiB
    return r.randint(20 * KIB, 64 * KIB)


# ---------------------------------------------------------------- messages


class Msg:
    """Header lines (already folded, no CRLF) and a body (bytes, CRLF)."""

    def __init__(self, r, index, subject=None, sender=None, rcpts=None, encode_subject=None):
        self.r = r
        self.index = index
        self.sender = sender or person(r)
        self.rcpts = rcpts or [person(r)]
        self.headers = []
        self.extra = []
        self.subject = subject or sentence(r, lo=3, hi=8).rstrip(".?!")
        self.encode_subject = encode_subject

    def head(self):
        r = self.r
        h = []
        h.append("Return-Path: <%s>" % addr(self.sender))
        h.append("Received: from mail%d.example.com (mail%d.example.com [192.0.2.%d])\r\n"
                 "\tby mx.example.com with ESMTP id %08X\r\n\tfor <%s>; %s"
                 % (self.index % 7, self.index % 7, 10 + self.index % 200,
                    r.getrandbits(32), addr(self.rcpts[0]), rfc5322_date(self.index)))
        h.append("From: %s" % display(self.sender))
        h.append(fold("To", ", ".join(display(p) for p in self.rcpts)))
        if self.encode_subject:
            charset, enc = self.encode_subject
            h.append("Subject: " + encoded_subject(self.subject, charset, enc))
        else:
            h.append(fold("Subject", self.subject))
        h.append("Date: %s" % rfc5322_date(self.index))
        h.append("Message-ID: <%d.%08x@example.com>" % (self.index, r.getrandbits(32)))
        h.extend(self.extra)
        h.append("MIME-Version: 1.0")
        return h

    def build(self, content_headers, body):
        lines = self.head() + content_headers
        return CRLF.join(l.encode("utf-8") for l in lines) + CRLF + CRLF + body + CRLF


def simple_text(r, m, target, words=WORDS, charset="us-ascii", cte="7bit"):
    text = text_body(r, target, words)
    raw = text.encode(charset if charset != "us-ascii" else "ascii")
    if cte == "quoted-printable":
        body = qp_encode(raw)
    elif cte == "base64":
        body = b64_lines(raw)
    else:
        body = crlf(raw)
    return m.build(["Content-Type: text/plain; charset=%s; format=flowed" % charset
                    if charset == "us-ascii" else "Content-Type: text/plain; charset=%s" % charset,
                    "Content-Transfer-Encoding: %s" % cte], body)


def html_of(text):
    esc = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    paras = "\n".join("<p>%s</p>" % p.replace("\n", "<br>\n") for p in esc.split("\n\n"))
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>message</title></head>\n"
            "<body style=\"font-family: Arial, sans-serif; font-size: 11pt\">\n%s\n</body></html>"
            % paras)


def alternative_part(r, index, text, charset="utf-8", html_extra=""):
    b = boundary(r, index, 1)
    html = html_of(text) + html_extra
    body = (b"--" + b.encode() + CRLF
            + b"Content-Type: text/plain; charset=" + charset.encode() + CRLF
            + b"Content-Transfer-Encoding: quoted-printable" + CRLF + CRLF
            + qp_encode(text.encode(charset)) + CRLF
            + b"--" + b.encode() + CRLF
            + b"Content-Type: text/html; charset=" + charset.encode() + CRLF
            + b"Content-Transfer-Encoding: quoted-printable" + CRLF + CRLF
            + qp_encode(html.encode(charset)) + CRLF
            + b"--" + b.encode() + b"--")
    return 'multipart/alternative; boundary="%s"' % b, body


def gen_plain(r, i, kind, target):
    m = Msg(r, i)
    return simple_text(r, m, target), False


def gen_plain_latin1(r, i, kind, target):
    m = Msg(r, i, subject="Grüße aus München: %s" % sentence(r, lo=2, hi=4).rstrip(".?!"),
            encode_subject=("ISO-8859-1", "Q"))
    words = WORDS + LATIN1_WORDS * 3
    return simple_text(r, m, target, words, "ISO-8859-1", "8bit"), False


def gen_plain_utf8(r, i, kind, target):
    m = Msg(r, i, subject="Update — %s ✓" % sentence(r, lo=2, hi=4).rstrip(".?!"),
            encode_subject=("UTF-8", "B"))
    words = WORDS + UTF8_WORDS * 3
    return simple_text(r, m, target, words, "UTF-8", "8bit"), False


def gen_qp(r, i, kind, target):
    m = Msg(r, i)
    words = WORDS + LATIN1_WORDS + ["a=b", "x=1", "100%=ok", "tab\tsep"]
    text = text_body(r, target, words)
    # A line longer than 76 characters forces soft line breaks; trailing space forces =20.
    text += "\n\n" + " ".join(r.choice(WORDS) for _ in range(40)) + " \n"
    return m.build(["Content-Type: text/plain; charset=UTF-8",
                    "Content-Transfer-Encoding: quoted-printable"],
                   qp_encode(text.encode("utf-8"))), False


def gen_alternative(r, i, kind, target):
    m = Msg(r, i)
    text = text_body(r, target // 2)
    ctype, body = alternative_part(r, i, text)
    return m.build(["Content-Type: " + ctype], body), False


ATTACHMENTS = {
    "attachment_pdf": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "application/pdf",
                       ["invoice-2024-%03d.pdf", "report_Q%d.pdf", "scan%04d.pdf"]),
    "attachment_zip": (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "application/zip",
                       ["photos-%d.zip", "archive_%03d.zip"]),
    "attachment_exe": (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00", "application/octet-stream",
                       ["setup%d.exe", "tool_v%d.exe"]),
}


def attachment_msg(r, i, kind, total, magic, ctype, names):
    m = Msg(r, i, subject="Files: %s" % sentence(r, lo=2, hi=5).rstrip(".?!"))
    text = text_body(r, r.randint(300, 1500))
    raw_size = max(512, int((total - len(text) - 1500) * 3 / 4 * 76 / 78))
    data = fake_bytes(r, magic, raw_size)
    name = r.choice(names) % r.randint(1, 999)
    b = boundary(r, i)
    body = (b"This is a multi-part message in MIME format." + CRLF + CRLF
            + b"--" + b.encode() + CRLF
            + b"Content-Type: text/plain; charset=us-ascii" + CRLF
            + b"Content-Transfer-Encoding: 7bit" + CRLF + CRLF
            + crlf(text) + CRLF
            + b"--" + b.encode() + CRLF
            + ('Content-Type: %s; name="%s"' % (ctype, name)).encode() + CRLF
            + b"Content-Transfer-Encoding: base64" + CRLF
            + ('Content-Disposition: attachment; filename="%s"' % name).encode() + CRLF + CRLF
            + b64_lines(data) + CRLF
            + b"--" + b.encode() + b"--")
    return m.build(['Content-Type: multipart/mixed; boundary="%s"' % b], body)


def gen_attachment(r, i, kind, target):
    magic, ctype, names = ATTACHMENTS[kind]
    return attachment_msg(r, i, kind, target, magic, ctype, names), False


LARGE_TARGETS = [1024 * KIB - 2 * KIB, 512 * KIB, 320 * KIB, 200 * KIB, 160 * KIB]


def gen_attachment_large(r, i, kind, target):
    magic, ctype, names = r.choice(list(ATTACHMENTS.values())[:2])
    return attachment_msg(r, i, kind, target, magic, ctype, names), False


def gen_encoded_subject(r, i, kind, target):
    choices = [
        ("Réunion de l'équipe à 14h - salle Étoile", "ISO-8859-1", "Q"),
        ("Angebot für Größenänderung der Straßenschilder", "ISO-8859-1", "B"),
        ("会議の予定について（来週月曜日）", "UTF-8", "B"),
        ("Отчёт за квартал и планы на следующий год", "UTF-8", "B"),
        ("Καλημέρα: νέα έκδοση του εγγράφου", "UTF-8", "Q"),
        ("Zoë’s “quarterly” numbers ✓ — final version, please review before Friday", "UTF-8",
         "Q"),
    ]
    subj, cs, enc = r.choice(choices)
    m = Msg(r, i, subject=subj, encode_subject=(cs, enc), sender=person(r))
    return simple_text(r, m, target), False


def gen_long_headers(r, i, kind, target):
    rcpts = [person(r) for _ in range(r.randint(8, 20))]
    m = Msg(r, i, rcpts=rcpts,
            subject="Long thread: " + " ".join(sentence(r, lo=10, hi=14) for _ in range(4)))
    refs = " ".join("<%d.%08x@example.com>" % (r.randint(1, 9999), r.getrandbits(32))
                    for _ in range(r.randint(15, 40)))
    m.extra.append(fold("References", refs))
    m.extra.append(fold("Cc", ", ".join(display(person(r), encode=True) for _ in range(6))))
    m.extra.append(fold("X-Mailing-Topics", " ".join(r.choice(WORDS) for _ in range(120))))
    if i % 2 == 0:
        # One physical header line well over 998 octets with no place to fold: real mail has
        # these (long tokens from broken mailers).
        m.extra.append("X-Long-Token: " + "".join(r.choice("abcdef0123456789") for _ in range(1200)))
    return simple_text(r, m, target), False


def gen_long_line(r, i, kind, target):
    m = Msg(r, i, subject="Tracking link and data dump")
    text = text_body(r, target // 2)
    long_url = "https://track.example.com/c/" + "".join(
        r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        for _ in range(1500 + 500 * (i % 3)))
    text += "\n\n" + long_url + "\n\nThanks."
    return m.build(["Content-Type: text/plain; charset=us-ascii",
                    "Content-Transfer-Encoding: 7bit"], crlf(text)), False


def gen_calendar(r, i, kind, target):
    org = person(r)
    atts = [person(r) for _ in range(r.randint(1, 4))]
    m = Msg(r, i, sender=org, rcpts=atts,
            subject="Invitation: %s" % sentence(r, lo=2, hi=5).rstrip(".?!"))
    if i % 2:
        m.extra.append("Content-Class: urn:content-classes:calendarmessage")
    day = 1 + i % 28
    uid = "%08x-%04x@example.com" % (r.getrandbits(32), i)
    ics_lines = [
        "BEGIN:VCALENDAR", "PRODID:-//conbool corpus//EN", "VERSION:2.0", "METHOD:REQUEST",
        "BEGIN:VEVENT",
        "ORGANIZER;CN=%s:mailto:%s" % (org[0], addr(org)),
    ] + ["ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=%s:mailto:%s"
         % (p[0], addr(p)) for p in atts] + [
        "DESCRIPTION:" + sentence(r, lo=10, hi=20),
        "UID:" + uid,
        "SUMMARY:" + m.subject[len("Invitation: "):],
        "DTSTART:202403%02dT090000Z" % day, "DTEND:202403%02dT100000Z" % day,
        "DTSTAMP:20240201T120000Z", "LOCATION:Room %d" % r.randint(1, 40),
        "SEQUENCE:0", "STATUS:CONFIRMED", "END:VEVENT", "END:VCALENDAR",
    ]
    # RFC 5545 §3.1: content lines fold at 75 octets with CRLF + space.
    folded = []
    for line in ics_lines:
        b = line.encode("utf-8")
        while len(b) > 75:
            folded.append(b[:75])
            b = b" " + b[75:]
        folded.append(b)
    ics = CRLF.join(folded)
    text = text_body(r, min(target, 3000))
    b = boundary(r, i)
    body = (b"--" + b.encode() + CRLF
            + b"Content-Type: text/plain; charset=UTF-8" + CRLF
            + b"Content-Transfer-Encoding: 8bit" + CRLF + CRLF
            + crlf(text) + CRLF
            + b"--" + b.encode() + CRLF
            + b'Content-Type: text/calendar; charset="UTF-8"; method=REQUEST' + CRLF
            + b"Content-Transfer-Encoding: 8bit" + CRLF + CRLF
            + ics + CRLF
            + b"--" + b.encode() + b"--")
    return m.build(['Content-Type: multipart/alternative; boundary="%s"' % b], body), False


def gen_dsn(r, i, kind, target):
    daemon = ("Mail Delivery System", "MAILER-DAEMON")
    victim = person(r)
    m = Msg(r, i, sender=daemon, rcpts=[victim],
            subject="Undelivered Mail Returned to Sender")
    m.extra.append("Auto-Submitted: auto-replied")
    b = boundary(r, i)
    bad = "nobody%d@example.com" % r.randint(1, 999)
    orig_id = "<%d.%08x@example.com>" % (r.randint(1, 9999), r.getrandbits(32))
    human = ("This is the mail system at host mx.example.com.\n\n"
             "I'm sorry to have to inform you that your message could not\n"
             "be delivered to one or more recipients. It's attached below.\n\n"
             "<%s>: host mx.example.com said: 550 5.1.1 User unknown\n" % bad)
    status = ("Reporting-MTA: dns; mx.example.com\n"
              "Arrival-Date: %s\n\n"
              "Final-Recipient: rfc822; %s\n"
              "Original-Recipient: rfc822;%s\n"
              "Action: failed\n"
              "Status: 5.1.1\n"
              "Remote-MTA: dns; mx.example.com\n"
              "Diagnostic-Code: smtp; 550 5.1.1 <%s>: Recipient address rejected: User unknown\n"
              % (rfc5322_date(i), bad, bad, bad))
    orig = ("Return-Path: <%s>\nFrom: %s\nTo: <%s>\nSubject: %s\nDate: %s\nMessage-ID: %s\n"
            % (addr(victim), display(victim), bad, sentence(r, lo=3, hi=6).rstrip(".?!"),
               rfc5322_date(i - 1), orig_id))
    body = (b"This is a MIME-encapsulated message." + CRLF + CRLF
            + b"--" + b.encode() + CRLF
            + b"Content-Description: Notification" + CRLF
            + b"Content-Type: text/plain; charset=us-ascii" + CRLF + CRLF
            + crlf(human) + CRLF
            + b"--" + b.encode() + CRLF
            + b"Content-Description: Delivery report" + CRLF
            + b"Content-Type: message/delivery-status" + CRLF + CRLF
            + crlf(status) + CRLF
            + b"--" + b.encode() + CRLF
            + b"Content-Description: Undelivered Message Headers" + CRLF
            + b"Content-Type: text/rfc822-headers" + CRLF + CRLF
            + crlf(orig) + CRLF
            + b"--" + b.encode() + b"--")
    msg = m.build(['Content-Type: multipart/report; report-type=delivery-status;\r\n'
                   '\tboundary="%s"' % b], body)
    # Null sender: the envelope and Return-Path are <> (RFC 3464, RFC 5321 §4.5.5).
    msg = msg.replace(b"Return-Path: <MAILER-DAEMON@example.com>", b"Return-Path: <>", 1)
    return msg, False


def gen_dot_lines(r, i, kind, target):
    m = Msg(r, i, subject="Config snippets and dotfiles")
    text = text_body(r, target // 2)
    dots = [
        ".", "..", "...", ".hidden file", ". leading dot and space", "..double dot",
        ".\t.tab", ".bashrc and .profile", ". ", "..."
    ]
    lines = text.split("\n")
    for d in dots:
        lines.insert(r.randint(1, len(lines)), d)
    # Some messages end with a lone "." line: on the wire that is "..\r\n.\r\n".
    if i % 3 == 0:
        lines.append(".")
    return m.build(["Content-Type: text/plain; charset=us-ascii",
                    "Content-Transfer-Encoding: 7bit"], crlf("\n".join(lines))), False


def gen_reply(r, i, kind, target):
    m = Msg(r, i)
    m.subject = "Re: " + m.subject
    parent = "<%d.%08x@example.com>" % (r.randint(1, 9999), r.getrandbits(32))
    m.extra.append("In-Reply-To: " + parent)
    m.extra.append("References: " + parent)
    reply = text_body(r, target // 3)
    quoted = "\n".join("> " + l if l else ">" for l in text_body(r, target // 2).split("\n"))
    text = reply + "\n\nOn %s, %s wrote:\n%s" % (rfc5322_date(i - 3), m.rcpts[0][0], quoted)
    return m.build(["Content-Type: text/plain; charset=us-ascii",
                    "Content-Transfer-Encoding: 7bit"], crlf(text)), False


def gen_spam_gtube(r, i, kind, target):
    m = Msg(r, i, subject=r.choice(["Test spam mail (GTUBE)", "You WON!!!", "Important notice"]),
            sender=person(r))
    text = text_body(r, min(target, 4000))
    paras = text.split("\n\n")
    paras.insert(r.randint(1, len(paras) - 1), GTUBE)
    text = "\n\n".join(paras)
    variant = i % 4
    if variant == 0:
        return simple_text_raw(m, text, "7bit"), True
    if variant == 1:
        ctype, body = alternative_part(r, i, text)
        return m.build(["Content-Type: " + ctype], body), True
    if variant == 2:
        return m.build(["Content-Type: text/plain; charset=us-ascii",
                        "Content-Transfer-Encoding: quoted-printable"],
                       qp_encode(text.encode("ascii"))), True
    # base64: only a scanner that decodes the body sees it (DESIGN §2).
    return m.build(["Content-Type: text/plain; charset=us-ascii",
                    "Content-Transfer-Encoding: base64"],
                   b64_lines(crlf(text))), True


def simple_text_raw(m, text, cte):
    return m.build(["Content-Type: text/plain; charset=us-ascii",
                    "Content-Transfer-Encoding: %s" % cte], crlf(text))


def gen_spam_phrases(r, i, kind, target):
    m = Msg(r, i, subject=r.choice([
        "FREE!!! You are a WINNER - claim your $1,000,000 prize NOW",
        "Cheap Viagra - 100% GUARANTEED - act now!!!",
        "URGENT BUSINESS PROPOSAL - $25,000,000 USD transfer",
        "Make money fast $$$ work from home",
    ]), sender=person(r))
    lines = r.sample(SPAM_LINES, k=6)
    text = "Dear friend,\n\n" + "\n\n".join(lines) + "\n\n" + "\n\n".join(lines[:3]).upper()
    hidden = ('<div style="display:none">%s</div>'
              % " ".join(r.choice(WORDS) for _ in range(200)))
    ctype, body = alternative_part(r, i, text, html_extra=hidden)
    return m.build(["Content-Type: " + ctype], body), True


GENERATORS = {
    "plain": gen_plain,
    "plain_latin1": gen_plain_latin1,
    "plain_utf8": gen_plain_utf8,
    "qp": gen_qp,
    "alternative": gen_alternative,
    "attachment_pdf": gen_attachment,
    "attachment_zip": gen_attachment,
    "attachment_exe": gen_attachment,
    "attachment_large": gen_attachment_large,
    "encoded_subject": gen_encoded_subject,
    "long_headers": gen_long_headers,
    "long_line": gen_long_line,
    "calendar": gen_calendar,
    "dsn": gen_dsn,
    "dot_lines": gen_dot_lines,
    "reply": gen_reply,
    "spam_gtube": gen_spam_gtube,
    "spam_phrases": gen_spam_phrases,
}


# ---------------------------------------------------------------- main


def main():
    plan = [kind for kind, n in PLAN for _ in range(n)]
    random.Random(SEED).shuffle(plan)
    for name in os.listdir(HERE):
        if name.endswith(".eml"):
            os.remove(os.path.join(HERE, name))
    manifest = ["file\tkind\tsize\texpected_spam"]
    large = list(LARGE_TARGETS)
    total = 0
    for index, kind in enumerate(plan, 1):
        r = random.Random(SEED * 1000 + index)
        target = size_target(r, kind)
        if kind == "attachment_large":
            target = large.pop(0)
        data, spam = GENERATORS[kind](r, index, kind, target)
        assert b"\n" not in data.replace(CRLF, b""), "bare LF in %d" % index
        assert b"\r" not in data.replace(CRLF, b""), "bare CR in %d" % index
        name = "%04d-%s.eml" % (index, kind)
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
        manifest.append("%s\t%s\t%d\t%s" % (name, kind, len(data), "yes" if spam else "no"))
        total += len(data)
    with open(os.path.join(HERE, "MANIFEST.tsv"), "wb") as f:
        f.write(("\n".join(manifest) + "\n").encode("ascii"))
    print("wrote %d messages, %d bytes" % (len(plan), total), file=sys.stderr)


if __name__ == "__main__":
    main()
