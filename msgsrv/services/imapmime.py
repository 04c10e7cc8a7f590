"""Message structure for IMAP FETCH and SEARCH: parts, sections, ENVELOPE, BODYSTRUCTURE
(RFC 3501 §6.4.5, §7.4.2; RFC 2045/2046 for MIME).

IMAP needs the exact octets of every part (sizes, line counts, `BODY[1.2]`, partial fetches), which
a parsed `email.message.Message` no longer has. So the message is cut into parts here, on the raw
octets (header / body at the first empty line, multipart bodies at their boundary lines), and
Python's `email` package reads what is inside the headers: Content-Type and Content-Disposition
parameters (quoting, RFC 2231) and, for SEARCH, encoded words and transfer encodings. Address
lists are tokenized here because IMAP's ENVELOPE wants them undecoded, with routes, groups and the
comment-as-name form, which `email`'s parser decodes or drops. Everything is linear in the input;
nesting is capped at MAX_DEPTH levels and MAX_PARTS parts.
"""

from __future__ import annotations

import email.message
import email.utils
from dataclasses import dataclass, field

from msgsrv.services.imapsyntax import astring_out

MAX_DEPTH = 50
MAX_PARTS = 5000
CRLF = b"\r\n"


# -- headers ---------------------------------------------------------------------------------------
def split_entity(data: bytes) -> tuple[bytes, bytes]:
    """(header including the empty line, body) of a message or MIME part."""
    if data.startswith(CRLF):
        return CRLF, data[2:]
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data, b""
    return data[:end + 4], data[end + 4:]


def header_fields(header: bytes) -> list[tuple[str, bytes]]:
    """(lower-case name, raw field with its continuation lines and CRLF) in message order."""
    out: list[tuple[str, bytes]] = []
    for line in header.split(CRLF):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            name, raw = out[-1]
            out[-1] = (name, raw + line + CRLF)
            continue
        name, colon, _ = line.partition(b":")
        if colon:
            out.append((name.strip().decode("ascii", "replace").lower(), line + CRLF))
    return out


def field_value(raw: bytes) -> str:
    """The unfolded value of a raw field (text after the colon, leading blanks and CRLF removed)."""
    value = raw.partition(b":")[2].replace(b"\r\n", b"").strip(b" \t")
    return value.decode("utf-8", "surrogateescape")


def fields_subset(header: bytes, names: list[str], negate: bool) -> bytes:
    """RFC 3501 HEADER.FIELDS [.NOT]: the matching fields in message order and the empty line."""
    wanted = {n.lower() for n in names}
    return b"".join(raw for name, raw in header_fields(header) if (name in wanted) != negate) + CRLF


def _params(value: str | None, header: str) -> tuple[str, list[tuple[str, str]]]:
    """(first word, [(name, value)]) of a Content-Type/Disposition value, by email's parser."""
    if not value:
        return "", []
    m = email.message.Message()
    m[header] = value
    params = m.get_params(header=header) or []
    first = params[0][0] if params else ""
    out = []
    for name, val in params[1:]:
        if isinstance(val, tuple):  # RFC 2231: decoded to text
            val = email.utils.collapse_rfc2231_value(val)
        out.append((name, val))
    return first, out


# -- the part tree ---------------------------------------------------------------------------------
@dataclass
class Part:
    header: bytes
    body: bytes
    fields: list[tuple[str, bytes]]
    maintype: str
    subtype: str
    params: list[tuple[str, str]]
    children: list[Part] = field(default_factory=list)
    message: Part | None = None  # the encapsulated message of a message/rfc822 part

    def get(self, name: str) -> str | None:
        for n, raw in self.fields:
            if n == name:
                return field_value(raw)
        return None

    @property
    def is_multipart(self) -> bool:
        return self.maintype.lower() == "multipart"


def parse(data: bytes, digest: bool = False, depth: int = 0, budget: list[int] | None = None) -> Part:
    """The part tree of DATA (a message or a MIME part; DIGEST: the default type is message/rfc822)."""
    budget = [MAX_PARTS] if budget is None else budget
    budget[0] -= 1
    header, body = split_entity(data)
    fields = header_fields(header)
    ctype = next((field_value(raw) for n, raw in fields if n == "content-type"), None)
    first, params = _params(ctype, "content-type")
    main, slash, sub = first.partition("/")
    if not (main and slash and sub):
        main, sub = ("message", "rfc822") if digest else ("text", "plain")
        params = [] if digest else [("charset", "us-ascii")]
    part = Part(header, body, fields, main, sub, params)
    if depth >= MAX_DEPTH or budget[0] <= 0:
        return part
    if part.is_multipart:
        boundary = dict((k.lower(), v) for k, v in params).get("boundary")
        pieces = _split_multipart(body, boundary.encode("utf-8", "surrogateescape")) if boundary else []
        for piece in pieces:
            if budget[0] <= 0:
                break
            part.children.append(parse(piece, sub.lower() == "digest", depth + 1, budget))
        if not part.children:  # RFC 3501 needs one part at least: an empty text/plain
            part.children.append(parse(b"\r\n", False, depth + 1, budget))
    elif main.lower() == "message" and sub.lower() == "rfc822":
        part.message = parse(body, False, depth + 1, budget)
    return part


def _split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts between `--boundary` lines (RFC 2046 §5.1.1); the CRLF before a boundary line is
    the boundary's. Without a closing line, the last part runs to the end."""
    delim = b"--" + boundary
    starts: list[tuple[int, int, bool]] = []  # (start of the delimiter line, end of it, is close)
    pos = 0
    while True:
        i = body.find(delim, pos)
        if i < 0:
            break
        pos = i + len(delim)
        if i != 0 and body[i - 2:i] != CRLF:
            continue
        close = body[pos:pos + 2] == b"--"
        eol = body.find(CRLF, pos)
        rest = body[pos + (2 if close else 0): len(body) if eol < 0 else eol]
        if rest.strip(b" \t"):
            continue  # `--boundaryX`: another boundary that starts like this one
        starts.append((i, len(body) if eol < 0 else eol + 2, close))
        if close:
            break
    parts = []
    for k, (_, end, close) in enumerate(starts):
        if close:
            break
        nxt = starts[k + 1][0] - 2 if k + 1 < len(starts) else len(body)
        parts.append(body[end:max(end, nxt)])
    return parts


def find_part(root: Part, path: list[int]) -> Part | None:
    """The part a section number names (RFC 3501 §6.4.5), or None."""
    entity = root  # a message: the top level or an encapsulated one
    part: Part | None = None
    for n in path:
        if part is not None:  # go one level down from the last part
            if part.message is not None:
                entity = part.message
            elif part.is_multipart:
                entity = part
            elif n == 1:
                continue  # `1` of a leaf is the leaf itself
            else:
                return None
        if entity.is_multipart:
            if not 1 <= n <= len(entity.children):
                return None
            part = entity.children[n - 1]
        elif n == 1:
            part = entity
        else:
            return None
    return part


# -- ENVELOPE (RFC 3501 §7.4.2) ------------------------------------------------------------------------
_SPECIALS = '()<>[]:;@\\,"'


def _lex(value: str) -> list[tuple[str, str]]:
    """RFC 5322 tokens: ('atom', text) (dots and domain literals included), ('qs', text),
    ('comment', text), ('sp', special character)."""
    out, i, n = [], 0, len(value)
    while i < n:
        ch = value[i]
        if ch in " \t\r\n":
            i += 1
        elif ch == '"':
            j, buf = i + 1, []
            while j < n and value[j] != '"':
                if value[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(value[j])
                j += 1
            out.append(("qs", "".join(buf)))
            i = j + 1
        elif ch == "(":
            depth, j, buf = 1, i + 1, []
            while j < n and depth:
                c = value[j]
                if c == "\\" and j + 1 < n:
                    buf.append(value[j + 1])
                    j += 2
                    continue
                depth += (c == "(") - (c == ")")
                if depth:
                    buf.append(c)
                j += 1
            out.append(("comment", "".join(buf).strip()))
            i = j
        elif ch == "[":
            j = value.find("]", i)
            j = n if j < 0 else j + 1
            out.append(("atom", value[i:j]))
            i = j
        elif ch in _SPECIALS:
            out.append(("sp", ch))
            i += 1
        else:
            j = i
            while j < n and value[j] not in _SPECIALS and value[j] not in " \t\r\n":
                j += 1
            out.append(("atom", value[i:j]))
            i = j
    return out


def parse_addresses(value: str | None) -> list[tuple[str | None, str | None, str | None, str | None]]:
    """(name, route, mailbox, host) tuples of an address-list; a group is (NIL NIL name NIL) ...
    (NIL NIL NIL NIL) as RFC 3501 §7.4.2 writes it."""
    if not value:
        return []
    toks = _lex(value)
    out: list[tuple[str | None, str | None, str | None, str | None]] = []
    i, n, in_group = 0, len(toks), False
    while i < n:
        words: list[str] = []
        comments: list[str] = []
        while i < n and toks[i][0] in ("atom", "qs", "comment"):
            kind, text = toks[i]
            (comments if kind == "comment" else words).append(text)
            i += 1
        stop = toks[i][1] if i < n else ""
        if stop == ":" and not in_group:
            out.append((None, None, " ".join(words), None))
            in_group = True
            i += 1
        elif stop == "<":
            i += 1
            route, local, domain = _angle(toks, i)
            while i < n and toks[i] != ("sp", ">"):
                i += 1
            i += 1
            name = " ".join(words) if words else (comments[-1] if comments else None)
            out.append((name, route, local, domain))
        elif stop == "@" and words:
            i += 1
            domain = []
            while i < n and toks[i][0] == "atom":
                domain.append(toks[i][1])
                i += 1
            while i < n and toks[i][0] == "comment":
                comments.append(toks[i][1])
                i += 1
            out.append((comments[-1] if comments else None, None, "".join(words), "".join(domain) or None))
        elif words:
            out.append((comments[-1] if comments else None, None, "".join(words), None))
        if i < n and toks[i] == ("sp", ";"):
            if in_group:
                out.append((None, None, None, None))
                in_group = False
            i += 1
        elif i < n and toks[i][0] == "sp" and toks[i][1] not in "<":
            i += 1  # `,` and stray specials
    if in_group:
        out.append((None, None, None, None))
    return out


def _angle(toks: list[tuple[str, str]], i: int) -> tuple[str | None, str | None, str | None]:
    """(route, local part, domain) inside `<...>` starting at token I (comments skipped)."""
    toks = [t for t in toks[i:] if t[0] != "comment"]
    i = 0
    route: list[str] = []
    n = len(toks)
    if i < n and toks[i] == ("sp", "@"):  # obs-route: <@a,@b:user@domain>
        j = i
        while j < n and toks[j] != ("sp", ":") and toks[j] != ("sp", ">"):
            j += 1
        if j < n and toks[j] == ("sp", ":"):
            route = [t[1] for t in toks[i:j]]
            i = j + 1
    local: list[str] = []
    while i < n and toks[i][0] in ("atom", "qs"):
        local.append(toks[i][1])
        i += 1
    domain: list[str] = []
    if i < n and toks[i] == ("sp", "@"):
        i += 1
        while i < n and toks[i][0] == "atom":
            domain.append(toks[i][1])
            i += 1
    return ("".join(route) or None), ("".join(local) or None), ("".join(domain) or None)


def _address_list(value: str | None) -> bytes | None:
    addrs = parse_addresses(value)
    if not addrs:
        return None
    return b"(" + b"".join(b"(" + b" ".join(astring_out(x) for x in a) + b")" for a in addrs) + b")"


def envelope(msg: Part) -> bytes:
    """The ENVELOPE of a message entity."""
    frm = _address_list(msg.get("from"))
    sender = _address_list(msg.get("sender")) or frm
    reply_to = _address_list(msg.get("reply-to")) or frm
    items = [astring_out(msg.get("date")), astring_out(msg.get("subject")), frm or b"NIL", sender or b"NIL",
             reply_to or b"NIL", _address_list(msg.get("to")) or b"NIL", _address_list(msg.get("cc")) or b"NIL",
             _address_list(msg.get("bcc")) or b"NIL", astring_out(msg.get("in-reply-to")),
             astring_out(msg.get("message-id"))]
    return b"(" + b" ".join(items) + b")"


# -- BODYSTRUCTURE (RFC 3501 §7.4.2) ---------------------------------------------------------------
def _plist(params: list[tuple[str, str]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(astring_out(k) + b" " + astring_out(v) for k, v in params) + b")"


def _extension(part: Part, multipart: bool) -> bytes:
    disp_value = part.get("content-disposition")
    if disp_value:
        kind, dparams = _params(disp_value, "content-disposition")
        disp = b"(" + astring_out(kind) + b" " + _plist(dparams) + b")"
    else:
        disp = b"NIL"
    lang_value = part.get("content-language")
    if lang_value:
        langs = [t.strip() for t in lang_value.split(",") if t.strip()]
        lang = astring_out(langs[0]) if len(langs) == 1 else b"(" + b" ".join(map(astring_out, langs)) + b")"
    else:
        lang = b"NIL"
    loc = astring_out(part.get("content-location"))
    head = _plist(part.params) if multipart else astring_out(part.get("content-md5"))
    return b" " + b" ".join((head, disp, lang, loc))


def body_structure(part: Part, extended: bool = True) -> bytes:
    """BODYSTRUCTURE (EXTENDED) or BODY of PART."""
    if part.is_multipart:
        inner = b"".join(body_structure(c, extended) for c in part.children)
        ext = _extension(part, True) if extended else b""
        return b"(" + inner + b" " + astring_out(part.subtype) + ext + b")"
    params = part.params
    encoding = (part.get("content-transfer-encoding") or "7bit").strip()
    items = [astring_out(part.maintype), astring_out(part.subtype), _plist(params),
             astring_out(part.get("content-id")), astring_out(part.get("content-description")),
             astring_out(encoding), str(len(part.body)).encode()]
    if part.message is not None:
        items += [envelope(part.message), body_structure(part.message, extended),
                  str(part.body.count(b"\n")).encode()]
    elif part.maintype.lower() == "text":
        items.append(str(part.body.count(b"\n")).encode())
    out = b"(" + b" ".join(items)
    if extended:
        out += _extension(part, False)
    return out + b")"
