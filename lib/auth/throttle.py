"""Slows password guessing: a client address with too many failed logins waits before it may try again."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

MAX_FAILURES = 10  # failed logins from one address within WINDOW_S before it must wait
WINDOW_S = 300.0


class LoginThrottle:
    """Counts failed logins per client address over a sliding window.

    Args:
        max_failures: failures allowed within ``window_s``; the next attempt waits until the oldest expires.
        window_s: the window, in seconds.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures[address]
        while failures and failures[0] <= self.clock() - self.window_s:
            failures.popleft()
        return failures

    def wait_s(self, address: str) -> float:
        """Seconds ``address`` must wait before its next login attempt (0: it may try now)."""
        with self._lock:
            failures = self._recent(address)
            if len(failures) < self.max_failures:
                return 0.0
            return failures[0] + self.window_s - self.clock()

    def failed(self, address: str) -> None:
        """Record a failed login from ``address``."""
        with self._lock:
            self._recent(address).append(self.clock())

    def succeeded(self, address: str) -> None:
        """Forget ``address``'s failures once it logs in."""
        with self._lock:
            self._failures.pop(address, None)
