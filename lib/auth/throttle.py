"""Slows password guessing: a client address with too many failed logins waits before it may try again."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

MAX_FAILURES = 10  # failed logins from one address within WINDOW_S before it must wait
WINDOW_S = 300.0
PRUNE_ABOVE = 1024  # addresses kept before expired ones are forgotten


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

    def attempt(self, address: str) -> float:
        """Start a login attempt from ``address``: the seconds it must wait first (the attempt is refused), or 0.

        An attempt that may go ahead is counted as a failure at once, and forgotten by :meth:`succeeded`: so
        attempts sent together, whose passwords are still being checked, count against the limit too.
        """
        with self._lock:
            self._prune()
            failures = self._recent(address)
            if len(failures) >= self.max_failures:
                return failures[0] + self.window_s - self.clock()
            failures.append(self.clock())
            return 0.0

    def succeeded(self, address: str) -> None:
        """Forget ``address``'s failures once it logs in."""
        with self._lock:
            self._failures.pop(address, None)

    def _prune(self) -> None:
        """Forget addresses whose failures have all expired, once many are kept (a client that varies its address
        would otherwise grow the table without end)."""
        if len(self._failures) < PRUNE_ABOVE:
            return
        for address in list(self._failures):
            if not self._recent(address):
                del self._failures[address]
