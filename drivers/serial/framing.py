"""The incremental framer every serial protocol is built on.

A framer takes bytes as they arrive (any split, any garbage) and returns whole decoded
frames. It never raises, never stalls (every step consumes input or waits for more) and
never holds more than ``max_frame`` bytes of unfinished input. A frame that is recognised
but wrong (bad checksum, bad tail, impossible content) becomes a
:class:`gateway.errors.FrameError` collected in :attr:`Framer.errors`; bytes that never
looked like a frame are only counted in :attr:`Framer.garbage_bytes`.
"""

from __future__ import annotations

import abc
import logging
from collections import deque
from typing import Generic, TypeVar

from gateway.errors import FrameError

log = logging.getLogger(__name__)

T = TypeVar("T")

NEED_MORE = None
"""``_extract`` returns ``(pos, NEED_MORE)`` when the frame at ``pos`` is not complete yet."""

MAX_ERRORS = 256


class Framer(abc.ABC, Generic[T]):
    """Base class: subclasses implement :meth:`_extract` on a buffer and a position."""

    protocol: str = ""
    max_frame: int = 256

    def __init__(self) -> None:
        self._buf = bytearray()
        self.errors: deque[FrameError] = deque(maxlen=MAX_ERRORS)
        self.garbage_bytes = 0
        self.frames = 0
        self.rejected = 0

    @property
    def pending(self) -> int:
        """Bytes held while waiting for the rest of a frame (bounded by ``max_frame``)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[T]:
        """Take the next bytes from the wire; return the frames they complete, in order."""
        self._buf += data
        buf = self._buf
        out: list[T] = []
        pos = 0
        end = len(buf)
        while pos < end:
            try:
                new_pos, result = self._extract(buf, pos)
            except FrameError as err:  # a subclass may raise instead of returning
                new_pos, result = pos + 1, err
            except Exception as exc:  # totality: a decoder bug must not kill the reader
                log.exception("%s: decoder failed", self.protocol)
                new_pos, result = pos + 1, FrameError(
                    f"decoder error: {type(exc).__name__}", bytes(buf[pos : pos + 64]),
                    protocol=self.protocol,
                )
            if result is NEED_MORE and new_pos <= pos:
                break
            if new_pos <= pos:  # defensive: a step must make progress
                new_pos = pos + 1
            pos = new_pos
            if result is NEED_MORE:
                continue
            if isinstance(result, FrameError):
                self.rejected += 1
                self.errors.append(result)
            else:
                self.frames += 1
                out.append(result)
        del buf[:pos]
        if len(buf) > self.max_frame:
            # Cannot happen when _extract bounds its lengths; kept as the last line of defence.
            self.garbage_bytes += len(buf)
            buf.clear()
        return out

    def pop_errors(self) -> list[FrameError]:
        """The rejections collected since the last call."""
        errs = list(self.errors)
        self.errors.clear()
        return errs

    def reset(self) -> None:
        """Forget unfinished input (after a reconnect the stream restarts mid-frame)."""
        self._buf.clear()

    def resync(self) -> list[T]:
        """The line went quiet with a partial frame held: give up on it, look again.

        Noise can look like the start of a long frame (a header whose length field points
        far ahead); the framer then waits for bytes that a quiet device never sends, and a
        real frame that came after the noise sits in the buffer. The driver calls this when
        no bytes came for a while: the held bytes are scanned again from the next byte.
        """
        if not self._buf:
            return []
        held = bytes(self._buf[1:])
        self._buf.clear()
        self.garbage_bytes += 1
        return self.feed(held)

    @abc.abstractmethod
    def _extract(self, buf: bytearray, pos: int) -> tuple[int, T | FrameError | None]:
        """Look at ``buf[pos:]``: return the position after what was consumed and the result.

        ``(pos, NEED_MORE)``: wait for more bytes; ``(p > pos, NEED_MORE)``: skipped garbage;
        ``(p, frame)`` or ``(p, FrameError)``: one frame, good or bad.
        """

    def _seek(self, buf: bytearray, pos: int, *syncs: bytes) -> tuple[int, bool]:
        """Find the earliest of ``syncs`` at or after ``pos``.

        Returns ``(index, True)`` when found; otherwise ``(keep_from, False)`` where the bytes
        from ``keep_from`` might be the start of a sync split across reads. Skipped bytes are
        counted as garbage.
        """
        best = -1
        for sync in syncs:
            i = buf.find(sync, pos)
            if i >= 0 and (best < 0 or i < best):
                best = i
        if best >= 0:
            self.garbage_bytes += best - pos
            return best, True
        longest = max(len(s) for s in syncs)
        new = max(pos, len(buf) - longest + 1)
        while new < len(buf) and not any(s.startswith(bytes(buf[new:])) for s in syncs):
            new += 1
        self.garbage_bytes += new - pos
        return new, False


class LineFramer(Framer[T]):
    """Framer for newline-terminated text protocols (RFLink, rtl_433 JSON)."""

    max_frame = 1024

    def __init__(self) -> None:
        super().__init__()
        self._discarding = False

    def _extract(self, buf: bytearray, pos: int) -> tuple[int, T | FrameError | None]:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            if len(buf) - pos > self.max_frame:
                if not self._discarding:
                    self._discarding = True
                    return len(buf), FrameError(
                        "line too long", bytes(buf[pos : pos + 64]), protocol=self.protocol
                    )
                self.garbage_bytes += len(buf) - pos
                return len(buf), NEED_MORE
            return pos, NEED_MORE
        line = bytes(buf[pos:nl]).rstrip(b"\r")
        if self._discarding:
            self._discarding = False
            self.garbage_bytes += nl + 1 - pos
            return nl + 1, NEED_MORE
        if not line.strip():
            return nl + 1, NEED_MORE
        if len(line) > self.max_frame:
            return nl + 1, FrameError("line too long", line[:64], protocol=self.protocol)
        return nl + 1, self.decode_line(line)

    def resync(self) -> list[T]:
        """A line that stopped before its newline is dropped whole."""
        self.garbage_bytes += len(self._buf)
        self._buf.clear()
        self._discarding = False
        return []

    @abc.abstractmethod
    def decode_line(self, line: bytes) -> T | FrameError | None:
        """One line without its terminator; ``None`` for lines that carry nothing."""
