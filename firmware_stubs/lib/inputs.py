# Debounced contacts and button gestures, sampled from the main loop (MicroPython).
#
# Mechanical buttons and reed switches bounce for a few milliseconds; an edge interrupt
# alone would count every bounce. The pin IRQ only wakes the loop (``busy``); the loop
# samples the level every few ms and accepts a new level once it held for ``debounce_ms``.
import time


class Debounced:
    """A level that changes only after it held for ``debounce_ms``."""

    def __init__(self, level, debounce_ms=30):
        self.level = level
        self.debounce_ms = debounce_ms
        self._raw = level
        self._since = time.ticks_ms()

    def feed(self, raw, now):
        """Take a raw sample; return True when the debounced level changed."""
        if raw != self._raw:
            self._raw = raw
            self._since = now
            return False
        if raw != self.level and time.ticks_diff(now, self._since) >= self.debounce_ms:
            self.level = raw
            return True
        return False

    @property
    def settling(self):
        return self._raw != self.level


# Gestures (the BTHome button event codes).
PRESS = 1
DOUBLE = 2
TRIPLE = 3
LONG = 4


class Gestures:
    """Debounced presses -> press / double / triple press, or long press while still held.

    A long press is reported when the hold reaches ``long_ms``, not at release, so a person
    who keeps the button down gets help without having to let go.
    """

    def __init__(self, debounce_ms=30, long_ms=800, gap_ms=350):
        self.contact = Debounced(False, debounce_ms)
        self.long_ms = long_ms
        self.gap_ms = gap_ms
        self.clicks = 0
        self.down_at = 0
        self.up_at = 0
        self.long_sent = False

    def feed(self, pressed, now):
        """Take one raw sample (True = pressed); return a gesture code or 0."""
        if self.contact.feed(pressed, now):
            if self.contact.level:
                self.down_at = now
                self.long_sent = False
            elif self.long_sent:
                self.clicks = 0
            else:
                self.clicks += 1
                self.up_at = now
        if self.contact.level:
            if not self.long_sent and time.ticks_diff(now, self.down_at) >= self.long_ms:
                self.long_sent = True
                self.clicks = 0
                return LONG
            return 0
        if self.clicks and time.ticks_diff(now, self.up_at) >= self.gap_ms:
            n = self.clicks
            self.clicks = 0
            return TRIPLE if n >= 3 else n
        return 0

    @property
    def busy(self):
        """True while a gesture is in progress (the loop must keep sampling fast)."""
        return self.contact.settling or self.contact.level or self.clicks > 0
