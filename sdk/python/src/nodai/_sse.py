"""A server-sent events decoder, as the WHATWG HTML standard parses ``text/event-stream``.

Pure: bytes in, events out, no I/O. Feed it the body in pieces of any size
(a piece may end inside a UTF-8 character or between ``\\r`` and ``\\n``):

* lines end with CRLF, LF or CR;
* a line starting with ``:`` is a comment (keep-alives), ignored;
* ``field: value`` loses one space after the colon, no more; a line without
  a colon is a field with an empty value;
* several ``data`` lines of one event are joined with ``\\n``;
* a blank line dispatches the event, if it had at least one ``data`` line;
  an event whose blank line never came (the stream ended first) is dropped;
* ``id`` and ``retry`` are kept on the events; unknown fields are ignored.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import List, Optional

__all__ = ["ServerSentEvent", "SSEDecoder"]

_EOL = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class ServerSentEvent:
    #: The ``event`` field; ``message`` when the event had none.
    event: str
    #: The ``data`` lines joined with ``\n``.
    data: str
    #: The last event id seen so far on the stream, if any.
    id: Optional[str] = None
    #: The reconnection time in ms, if this event set one.
    retry: Optional[int] = None


class SSEDecoder:
    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._event = ""
        self._data: List[str] = []
        self._last_id: Optional[str] = None
        self._retry: Optional[int] = None

    def feed(self, data: bytes) -> List[ServerSentEvent]:
        """The events completed by ``data``."""
        return self._decode(self._utf8.decode(data), final=False)

    def end(self) -> List[ServerSentEvent]:
        """At the end of the stream: the events a last lone ``\r`` completes.

        What is left after that is an event without its blank line: dropped.
        """
        events = self._decode(self._utf8.decode(b"", final=True), final=True)
        self._buffer, self._event, self._data = "", "", []
        return events

    def _decode(self, text: str, *, final: bool) -> List[ServerSentEvent]:
        if not self._started and text:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        self._buffer += text
        events: List[ServerSentEvent] = []
        start = 0
        while True:
            match = _EOL.search(self._buffer, start)
            if match is None:
                break
            if match.group() == "\r" and match.end() == len(self._buffer) and not final:
                break  # maybe the first half of a CRLF: wait for the next piece
            event = self._line(self._buffer[start : match.start()])
            if event is not None:
                events.append(event)
            start = match.end()
        self._buffer = self._buffer[start:]
        return events

    def _line(self, line: str) -> Optional[ServerSentEvent]:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id":
            if "\0" not in value:
                self._last_id = value
        elif field == "retry":
            if value and value.isascii() and value.isdigit():
                self._retry = int(value)
        return None

    def _dispatch(self) -> Optional[ServerSentEvent]:
        event: Optional[ServerSentEvent] = None
        if self._data:
            event = ServerSentEvent(
                event=self._event or "message",
                data="\n".join(self._data),
                id=self._last_id,
                retry=self._retry,
            )
        self._event, self._data, self._retry = "", [], None
        return event
