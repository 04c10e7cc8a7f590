"""msgsrv/services/imapmime.py and imapfetch.py: parts, sections, ENVELOPE, BODYSTRUCTURE."""

from __future__ import annotations

import pytest

from msgsrv.services import imapfetch, imapmime
from msgsrv.services.imapsyntax import SyntaxProblem

MIXED = (b"From: Ann <ann@example.org>\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n"
         b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\nworld\r\n"
         b"--b1\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"m.eml\"\r\n\r\n"
         b"Subject: inner\r\nFrom: bob@example.org\r\n\r\ninner body\r\n"
         b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
         b"--b1--\r\nepilogue\r\n")


def fetch(word: str, data: bytes = MIXED) -> bytes | None:
    item = imapfetch.parse_item(word)
    value = imapfetch.section_bytes(item, data, lambda: imapmime.parse(data))
    return None if value is None else imapfetch.partial(item, value)


def test_parts_are_cut_at_boundary_lines_with_exact_octets():
    tree = imapmime.parse(MIXED)
    assert [(c.maintype, c.subtype) for c in tree.children] == [
        ("text", "plain"), ("message", "rfc822"), ("application", "octet-stream")]
    assert tree.children[0].body == b"hello\r\nworld"  # the CRLF before --b1 is the boundary's (RFC 2046)
    assert tree.children[1].message.get("subject") == "inner"


@pytest.mark.parametrize("word,expected", [
    ("BODY[1]", b"hello\r\nworld"),
    ("BODY[1.MIME]", b"Content-Type: text/plain; charset=utf-8\r\n\r\n"),
    ("BODY[2]", b"Subject: inner\r\nFrom: bob@example.org\r\n\r\ninner body"),
    ("BODY[2.HEADER]", b"Subject: inner\r\nFrom: bob@example.org\r\n\r\n"),
    ("BODY[2.TEXT]", b"inner body"),
    ("BODY[2.1]", b"inner body"),
    ("BODY[3]", b"AAEC"),
    ("BODY.PEEK[HEADER.FIELDS (subject FROM)]", b"From: Ann <ann@example.org>\r\nSubject: parts\r\n\r\n"),
    ("BODY[HEADER.FIELDS.NOT (From Subject Content-Type)]", b"MIME-Version: 1.0\r\n\r\n"),
    ("BODY[]<0.4>", b"From"),
    ("BODY[TEXT]<0.8>", b"preamble"),
    ("BODY[4]", None),
    ("BODY[1.HEADER]", None),
])
def test_sections(word, expected):
    assert fetch(word) == expected


def test_the_body_of_a_single_part_message_is_part_1():
    msg = b"Subject: x\r\n\r\nonly\r\n"
    assert fetch("BODY[1]", msg) == b"only\r\n"
    assert fetch("BODY[TEXT]", msg) == b"only\r\n"
    assert fetch("BODY[2]", msg) is None


@pytest.mark.parametrize("word", ["BODY[HEADER.FIELDS]", "BODY[MIME]", "BODY[1.0]", "BODY[]<0.0>", "FOO", "BODY[X]"])
def test_invalid_fetch_items(word):
    with pytest.raises(SyntaxProblem):
        imapfetch.parse_item(word)


def test_labels_echo_the_section_and_only_the_origin():
    assert imapfetch.parse_item("BODY.PEEK[HEADER.FIELDS (From)]<10.20>").label == "BODY[HEADER.FIELDS (From)]<10>"
    assert imapfetch.parse_item("RFC822.HEADER").label == "RFC822.HEADER"
    assert [i.kind for i in imapfetch.parse_items("FULL")] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]


def test_bodystructure_of_a_multipart_message():
    bs = imapmime.body_structure(imapmime.parse(MIXED), True).decode()
    assert bs.startswith('(("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 12 1 NIL NIL NIL NIL)')
    assert '("message" "rfc822" NIL NIL NIL "7bit" 51 (NIL "inner" ((NIL NIL "bob" "example.org"))' in bs
    assert '("attachment" ("filename" "m.eml"))' in bs
    assert '"application" "octet-stream" NIL NIL NIL "base64" 4 NIL NIL NIL NIL)' in bs
    assert bs.endswith(' "mixed" ("boundary" "b1") NIL NIL NIL)')
    body = imapmime.body_structure(imapmime.parse(MIXED), False).decode()
    assert body.endswith(' "mixed")') and "attachment" not in body


def test_bodystructure_defaults_to_us_ascii_text():
    assert imapmime.body_structure(imapmime.parse(b"Subject: x\r\n\r\nab\r\ncd"), False) == \
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1)'


def test_envelope_with_groups_routes_comments_and_empty_sender():
    msg = (b"Date: Thu, 15 Feb 2007 01:02:03 +0200\r\nFrom: user@domain (Real Name)\r\nSender: \r\n"
           b"To: group: g1@d1.org, g2@d2.org;, <@route:u@d>\r\nCc: \"Q \\\"x\\\"\" <q@d>\r\n"
           b"Subject: =?utf-8?q?J=C3=B6rg?=\r\nMessage-ID: <id@x>\r\n\r\nbody\r\n")
    env = imapmime.envelope(imapmime.parse(msg)).decode()
    assert env == ('("Thu, 15 Feb 2007 01:02:03 +0200" "=?utf-8?q?J=C3=B6rg?=" (("Real Name" NIL "user" "domain")) '
                   '(("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) '
                   '((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)'
                   '(NIL "@route" "u" "d")) (("Q \\"x\\"" NIL "q" "d")) NIL NIL "<id@x>")')


def test_hostile_nesting_is_capped():
    msg = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(200))
    tree = imapmime.parse(msg)
    depth = 0
    while tree.children:
        tree = tree.children[0]
        depth += 1
    assert depth <= imapmime.MAX_DEPTH
