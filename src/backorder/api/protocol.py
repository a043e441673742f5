"""uvicorn's httptools protocol with a bound on a request's head (request line and headers).

httptools sets no limit of its own: uvicorn buffered a 5 MB header and handed it to the app
(measured), so one client could make a worker hold whatever it sent. Here, once more than
`MAX_HEAD_BYTES` have arrived without the headers being complete, the connection gets a 431
and is closed, before the rest is read. h11 has its own limit
(`h11_max_incomplete_event_size`, which `backorder serve` sets to the same value).
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 16 * 1024  # nginx's default is 4 x 8 KB; browsers send well under 8 KB

_BODY = orjson.dumps(
    {
        "type": "https://backorder.dev/problems/payload_too_large",
        "title": "Request Header Fields Too Large",
        "status": 431,
        "detail": f"request line and headers over {MAX_HEAD_BYTES} bytes",
        "code": "payload_too_large",
        "request_id": None,
    }
)
_REFUSAL = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/problem+json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _BODY
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    _in_head = True
    _head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: the chunk that completes a head may carry body bytes too.
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self.transport.write(_REFUSAL)
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
