"""What a CSV record is, for every path that reads one (`dataarch migrate`,
`dataarch ingest`, `dataarch upload` and POST /tables/{table}/csv).

RFC 4180, read strictly and byte-exactly:

- A record ends at a line feed; a carriage return right before it belongs to
  the line ending (CRLF, LF and a mix all work). Line numbers are physical:
  the n-th line feed ends line n.
- Fields are separated by the delimiter (default ","). A field is quoted
  when its first character is `"`: it then runs to the next `"` that is not
  doubled (`""` stands for one `"`), may hold delimiters, carriage returns
  and line feeds, and must be followed by the delimiter or the record's end.
  A `"` anywhere else makes the record malformed. An empty field is absent.
- Every line belongs to exactly one record, or is blank, or is the header.
  A record that is broken (a quote out of place, a quoted field not closed
  within MAX_RECORD_CHARS or by the end of the file, bytes not valid in the
  file's encoding) is one rejection at its first line, with its raw text
  (undecodable bytes written as \\xNN); reading resumes at the next line.
- A line longer than MAX_LINE_BYTES cannot belong to a record within
  MAX_RECORD_CHARS: once that many bytes of it are read without its line
  feed, it is one rejection (too_long) at its line, with its first
  kilobyte as its raw text, and the rest of it is skipped unread. So
  memory stays bounded (a chunk and a line) and time linear, whatever the
  shape of the lines.
- A gzip file that expands more than MAX_GZIP_RATIO times, past
  GZIP_RATIO_FROM bytes, is refused whole (a compression bomb).
- A NUL character cannot be stored in PostgreSQL text: it becomes U+FFFF,
  which the field rules reject as invalid_character (as for the JSON API).
- A UTF-8 byte-order mark before the first line is ignored; a gzip file is
  read through gunzip. A first line whose fields are the table's column
  names is a header, and is skipped (as is line 1 with `header=True`).

Nothing here is interpreted by PostgreSQL's COPY: the reader hands out
pieces (a block of plain lines, or one record it parsed) that travel as
binary COPY values. A block's lines hold no quote and no NUL, so the
database splits them on the delimiter alone (procedures/040, as
split_plain does here); every other record is split here, once.
"""

from __future__ import annotations

import codecs
import gzip
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

CHUNK = 1 << 20  # bytes read at a time; a block holds the plain lines of one chunk
MAX_RECORD_CHARS = 1 << 16  # a quoted field still open after this many characters is broken
MAX_LINE_BYTES = 4 * MAX_RECORD_CHARS  # a longer line is too_long, skipped unread
SHOWN_BYTES = 1 << 10  # what of such a line the rejection keeps
MAX_GZIP_RATIO = 200  # a CSV file compresses 5-20 times; a bomb, a thousand
GZIP_RATIO_FROM = 16 << 20  # decompressed bytes before the ratio is judged
NUL_STAND_IN = "\uffff"  # what a NUL becomes (see the field rules in procedures/010)
_BOM = "\ufeff"
_GZIP_MAGIC = b"\x1f\x8b"


class CsvError(ValueError):
    """The options or the file cannot be read at all (not one record: the whole)."""


@dataclass(frozen=True)
class Dialect:
    delimiter: str = ","
    encoding: str = "utf-8"
    header: bool = False  # line 1 is a header, whatever it holds

    def __post_init__(self) -> None:
        if len(self.delimiter) != 1 or self.delimiter in '"\r\n\x00':
            raise CsvError(
                f"the delimiter must be one character other than a quote, a line break or"
                f" NUL, not {self.delimiter!r}"
            )
        try:
            name = codecs.lookup(self.encoding).name
        except (LookupError, ValueError):  # ValueError: a NUL in the name
            raise CsvError(
                f"unknown encoding {self.encoding!r} (e.g. utf-8, latin1, windows-1252)"
            ) from None
        try:  # codecs such as "undefined" or "rot13" encode nothing, or not to bytes
            ascii_compatible = "\n,;\t|".encode(name, "replace") == b"\n,;\t|"
        except (UnicodeError, TypeError, LookupError):
            ascii_compatible = False
        if not ascii_compatible:
            raise CsvError(f"{self.encoding} is not ASCII-compatible: convert the file to UTF-8")


PLAIN = Dialect()  # comma-separated UTF-8 without a header: what the seed's files are


@dataclass(frozen=True)
class Piece:
    """What the reader hands out. A block (record=False): `lines` lines from
    `first_line`, joined by line feeds without the CR of a CRLF ending, each
    one record (or blank), none holding a quote or a NUL. A record (record=True): one record at
    `first_line` spanning `lines` lines; `fields` when it parsed, else
    `problem` says why not."""

    first_line: int
    lines: int
    text: str
    record: bool = False
    fields: tuple[str | None, ...] | None = None
    problem: str | None = None
    reason: str | None = None  # a broken record's reason code: malformed_line, else this


@dataclass(frozen=True)
class Record:
    """One record, for a client that sends records one by one."""

    line: int
    lines: int
    raw: str
    fields: tuple[str | None, ...] | None  # None: broken, see problem
    problem: str | None = None


def without_cr(line: str) -> str:
    """A line without the carriage return of its CRLF ending."""
    return line[:-1] if line.endswith("\r") else line


def _without_line_ends(lines: str) -> str:
    """Lines joined by LF, without the CR of any CRLF ending (a CR before
    another CR is data: "x\\r\\r\\n" is the field "x\\r")."""
    lines = lines.replace("\r\n", "\n")
    return lines[:-1] if lines.endswith("\r") else lines


def _overlong_line(line: _Overlong, encoding: str) -> _Broken:
    shown = line.head.decode(encoding, "backslashreplace").replace("\x00", "\\x00")
    return _Broken(
        f"{without_cr(shown)}...",
        f"the line is {line.size:,} bytes, beyond the {MAX_LINE_BYTES:,} a record may take:"
        f" rejected unread (its first {len(line.head):,} bytes are kept)",
        "too_long",
    )


def split_plain(line: str, delimiter: str) -> tuple[str | None, ...]:
    """The fields of a line without quotes and without its line ending; an
    empty field is absent. The database does the same for the lines of a
    block (_record_fields in procedures/040)."""
    return tuple(f or None for f in line.split(delimiter))


@dataclass
class Parsing:
    """A record read so far, a line at a time: its fields, the parts of a
    quoted field still open at the end of its last line (quotes still
    doubled), and how many characters its text holds before the next line."""

    fields: list[str | None] = field(default_factory=list)
    open_parts: list[str] | None = None  # None: no quoted field is open
    chars: int = 0


class Parser:
    """The record grammar for one delimiter. `more` parses a record's next
    line, going on from where the last one stopped, so each character is
    scanned once: parsing the record again from its start at every line of
    a quoted field cost time quadratic in its lines (a field of 16 000
    empty lines 3.1 s, now 0.03; of the 65 536 MAX_RECORD_CHARS allows ~50
    s, now 0.12)."""

    def __init__(self, delimiter: str) -> None:
        self.quoted = re.compile(r'(?:[^"]|"")*', re.S)  # inside quotes: to the closing one
        self.plain = re.compile(rf'[^"{re.escape(delimiter)}]*', re.S)
        self.delimiter = delimiter

    def parse(self, text: str) -> tuple[str, tuple[str | None, ...] | None, str | None]:
        """A whole record (line feeds inside it are data): ("ok", fields,
        None); ("open", None, None) while a quoted field is still open at the
        end of `text`; or ("bad", None, why)."""
        return self.more(Parsing(), text)

    def more(
        self, record: Parsing, text: str, cr: bool = False
    ) -> tuple[str, tuple[str | None, ...] | None, str | None]:
        """The record's next line, as parse answers; `text` without the CR
        of a CRLF ending, which `cr` says it had (data, if a quoted field
        goes on past it). While "open", `record` holds what the next line
        goes on from; a position in a message counts from the record's start."""
        base, fields, at, end = record.chars, record.fields, 0, len(text)
        while True:
            if record.open_parts is not None or text.startswith('"', at):
                if record.open_parts is None:  # it opens here
                    record.open_parts, at = [], at + 1
                start, at = at, self.quoted.match(text, at).end()
                if at == end:  # open: the CR is data now, and the line feed after it
                    record.open_parts.append(text[start:] + "\r" * cr)
                    record.chars = base + end + cr + 1
                    return "open", None, None
                record.open_parts.append(text[start:at])
                fields.append("\n".join(record.open_parts).replace('""', '"'))
                record.open_parts = None
                at += 1  # past the closing quote
                if at < end and text[at] != self.delimiter:
                    return (
                        "bad",
                        None,
                        (
                            f"a quoted field ends at character {base + at} and is followed by"
                            f" {text[at]!r}, not the delimiter"
                        ),
                    )
            else:
                match = self.plain.match(text, at)
                fields.append(match.group() or None)
                at = match.end()
                if at < end and text[at] == '"':
                    return (
                        "bad",
                        None,
                        (
                            f'a quote (") at character {base + at + 1} is inside an unquoted'
                            ' field: quote the whole field and double the quote ("")'
                        ),
                    )
            if at == end:
                return "ok", tuple(fields), None
            at += 1  # past the delimiter


# -- lines ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    """Plain lines: no quote, no NUL, decoded, joined by LF, each still with
    the CR of a CRLF ending. The CRs go only when the block is handed out
    (_without_line_ends): until then a quoted field opened on an earlier
    line may take these lines in, and inside quotes a CR is data. Such a
    field takes lines off the front one at a time: `at` is where the first
    line left starts (copying the rest at every line cost time quadratic in
    the lines it took)."""

    raw: str
    count: int
    at: int = 0


@dataclass(frozen=True)
class _Broken:
    """A line that is a broken record before any parsing: bytes not valid
    in the encoding, or a line beyond MAX_LINE_BYTES (reason too_long)."""

    raw: str
    problem: str
    reason: str | None = None


@dataclass(frozen=True)
class _Overlong:
    """A line beyond MAX_LINE_BYTES, read past: its first bytes and its size."""

    head: bytes
    size: int  # its bytes, without its line feed
    ended: bool = False  # a line feed ended it (the last line may have none)


_Line = str | _Broken  # one line that needs the record parser


def _chunks(source: BinaryIO | Iterable[bytes]) -> Iterator[bytes | _Overlong]:
    """Byte chunks that end at a line feed (the last one may not), and, in
    their place, each line beyond MAX_LINE_BYTES, read past: never more than
    a chunk and MAX_LINE_BYTES held, and every byte copied a bounded number
    of times (joining each part to a growing line was quadratic)."""
    carry, skipping = b"", None
    for part in _parts(source):
        if skipping is not None:  # the rest of a line read past
            end = part.find(b"\n")
            if end < 0:
                skipping = _Overlong(skipping.head, skipping.size + len(part))
                continue
            yield _Overlong(skipping.head, skipping.size + end, ended=True)
            skipping, part = None, part[end + 1 :]
        data = carry + part if carry else part
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        if cut:
            yield data[:cut]
        if len(carry) > MAX_LINE_BYTES:
            skipping, carry = _Overlong(carry[:SHOWN_BYTES], len(carry)), b""
    if skipping is not None:
        yield skipping
    elif carry:
        yield carry


def _parts(source: BinaryIO | Iterable[bytes]) -> Iterable[bytes]:
    """The bytes of a file (through gunzip when it is gzip) or of an iterable."""
    if not hasattr(source, "read"):
        return source
    if hasattr(source, "peek") and source.peek(2)[:2] == _GZIP_MAGIC:
        return _gunzipped(source)
    return iter(lambda: source.read(CHUNK), b"")  # type: ignore[union-attr]


def _gunzipped(raw: BinaryIO) -> Iterator[bytes]:
    """A gzip file's bytes, refused (CsvError) once they expand beyond
    MAX_GZIP_RATIO times the compressed bytes read, past GZIP_RATIO_FROM."""
    start, out = raw.tell(), 0
    stream = gzip.GzipFile(fileobj=raw)
    while part := stream.read(CHUNK):
        out += len(part)
        read = max(raw.tell() - start, 1)
        if out > GZIP_RATIO_FROM and out > MAX_GZIP_RATIO * read:
            raise CsvError(
                f"the gzip file expands {out // read} times ({out >> 20} MB from"
                f" {read >> 10} KB read so far), beyond the {MAX_GZIP_RATIO} a CSV file"
                " does: not loaded (a compression bomb?)"
            )
        yield part


class Reader:
    """The pieces of a CSV byte stream (a binary file or an iterable of
    bytes), counting the lines and bytes it read as it goes."""

    def __init__(
        self,
        source: BinaryIO | Iterable[bytes],
        dialect: Dialect | None = None,
        columns: Sequence[str] = (),
    ) -> None:
        self.dialect = dialect = dialect or PLAIN
        self.columns = tuple(columns)  # a first line naming them is a header
        self.parser = Parser(dialect.delimiter)
        self.lines = 0  # physical lines read so far
        self.bytes = 0
        self.header: str | None = None  # the header line skipped, if any
        self.first_fields: tuple[str | None, ...] | None = None  # line 1's, when plain
        self._source = source
        self._back: list[_Block | _Line] = []
        self._number = 0  # the number of the last line handed out

    # -- what callers use ---------------------------------------------------------------

    def pieces(self) -> Iterator[Piece]:
        items = self._items()
        for item in iter(lambda: self._next(items), None):
            first = self._number + 1
            if isinstance(item, _Block):
                self._number += item.count
                yield Piece(first, item.count, _without_line_ends(item.raw[item.at :]))
            else:
                self._number += 1
                if isinstance(item, str) and not without_cr(item):
                    continue  # a blank line, read again after a broken record
                yield self._record(first, item, items)

    def records(self) -> Iterator[Record]:
        """One record at a time, its fields split (what `dataarch ingest` sends)."""
        for piece in self.pieces():
            if piece.record:
                yield Record(piece.first_line, piece.lines, piece.text, piece.fields, piece.problem)
                continue
            for n, line in enumerate(piece.text.split("\n")):
                if line:
                    yield Record(piece.first_line + n, 1, line,
                                 split_plain(line, self.dialect.delimiter))  # fmt: skip

    # -- records ------------------------------------------------------------------------

    def _record(self, first: int, line: _Line, items: Iterator[_Block | _Line]) -> Piece:
        """The record that starts with `line`, reading on while one of its
        quoted fields is open."""
        if isinstance(line, _Broken):
            return Piece(first, 1, line.raw, True, None, line.problem, line.reason)
        taken: list[str] = []
        record, following = Parsing(), line
        while True:
            taken.append(following)
            state, fields, why = self.parser.more(
                record, without_cr(following), following.endswith("\r")
            )
            if state != "open":
                text = "\n".join([*taken[:-1], without_cr(taken[-1])])
                return Piece(first, len(taken), text, True, fields, why)
            # the record's text so far: its lines, the last without its CR
            chars = record.chars - 1 - taken[-1].endswith("\r")
            following = self._next_line(items) if chars <= MAX_RECORD_CHARS else None
            if not isinstance(following, str):  # the end, a limit or an undecodable line
                if following is not None:
                    self._push_back(following)
                for extra in reversed(taken[1:]):  # not part of it: they are read again
                    self._push_back(extra)
                where = f"within {MAX_RECORD_CHARS} characters" if following is None and (
                    chars > MAX_RECORD_CHARS) else "by the end of the file"  # fmt: skip
                if isinstance(following, _Broken):
                    where = "before an unreadable line"
                raw = without_cr(line).replace(NUL_STAND_IN, "\\x00")
                problem = f"a quoted field opened on this line is not closed {where}"
                return Piece(first, 1, raw, True, None, problem)

    # -- lines --------------------------------------------------------------------------

    def _next(self, items: Iterator[_Block | _Line]) -> _Block | _Line | None:
        return self._back.pop() if self._back else next(items, None)

    def _next_line(self, items: Iterator[_Block | _Line]) -> _Line | None:
        """The next single line (a block is opened up), or None at the end."""
        item = self._next(items)
        if isinstance(item, _Block):
            end = item.raw.find("\n", item.at) if item.count > 1 else len(item.raw)
            if item.count > 1:
                self._back.append(_Block(item.raw, item.count - 1, end + 1))
            item = item.raw[item.at : end]
        if item is not None:
            self._number += 1
        return item

    def _push_back(self, item: _Line) -> None:
        self._back.append(item)
        self._number -= 1

    def _items(self) -> Iterator[_Block | _Line]:
        first = True
        for chunk in _chunks(self._source):
            if isinstance(chunk, _Overlong):
                first = False  # a header is never this long
                self.bytes += chunk.size + chunk.ended
                self.lines += 1
                yield _overlong_line(chunk, self.dialect.encoding)
                continue
            self.bytes += len(chunk)
            count = chunk.count(b"\n") + (not chunk.endswith(b"\n"))
            self.lines += count
            body = chunk[:-1] if chunk.endswith(b"\n") else chunk
            try:
                text: str | None = body.decode(self.dialect.encoding)
            except UnicodeDecodeError:
                text = None
            if first:
                first = False
                body = body.removeprefix(_BOM.encode())
                text = text.removeprefix(_BOM) if text is not None else None
                yield from self._first_line(body, text)
                continue
            if text is not None and '"' not in text and "\x00" not in text:
                yield _Block(text, count)
            else:
                yield from self._careful(body, text)

    def _first_line(self, body: bytes, text: str | None) -> Iterator[_Block | _Line]:
        """The first chunk: line 1 may be a header, to skip."""
        lines = list(self._careful(body, text))
        head = lines[0] if lines else None
        if isinstance(head, _Block):
            line, _, rest = head.raw.partition("\n")
            fields = self.first_fields = split_plain(without_cr(line), self.dialect.delimiter)
            if self.dialect.header or (self.columns and fields == self.columns):
                self.header = without_cr(line)
                self._number = 1
                lines[0] = _Block(rest, head.count - 1)
        elif isinstance(head, str) and self.dialect.header:
            self.header = without_cr(head)
            self._number = 1
            lines.pop(0)
        yield from (item for item in lines if not (isinstance(item, _Block) and item.count == 0))

    def _careful(self, body: bytes, text: str | None) -> Iterator[_Block | _Line]:
        """A chunk line by line: plain lines go in blocks, the others one by one."""
        plain: list[str] = []
        encoding = self.dialect.encoding
        for raw in body.split(b"\n") if text is None else text.split("\n"):
            line: _Line
            if isinstance(raw, bytes):
                try:
                    line = raw.decode(encoding)
                except UnicodeDecodeError as exc:
                    shown = raw.decode(encoding, "backslashreplace").replace("\x00", "\\x00")
                    line = _Broken(
                        without_cr(shown),
                        f"bytes not valid {encoding} at byte {exc.start + 1} of the line",
                    )
            else:
                line = raw
            if isinstance(line, str) and '"' not in line and "\x00" not in line:
                plain.append(line)  # its CR stays until we know it is not inside quotes
                continue
            if plain:
                yield _Block("\n".join(plain), len(plain))
                plain = []
            yield line.replace("\x00", NUL_STAND_IN) if isinstance(line, str) else line
        if plain:
            yield _Block("\n".join(plain), len(plain))
