from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from lib.auth import throttle as throttle_module
from lib.auth.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_waits_after_too_many_failures_until_the_oldest_expires() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window_s=60, clock=clock)
    for _ in range(3):
        assert throttle.attempt("10.0.0.5") == 0  # each attempt fails: nothing calls succeeded()
        clock.now += 10
    assert throttle.attempt("10.0.0.5") == 30  # the first failure (t=1000) expires at t=1060; now t=1030
    assert throttle.attempt("10.0.0.6") == 0  # other addresses are not affected
    clock.now += 30
    assert throttle.attempt("10.0.0.5") == 0


def test_a_successful_login_forgets_the_failures() -> None:
    throttle = LoginThrottle(max_failures=2, window_s=60, clock=Clock())
    throttle.attempt("a")
    throttle.attempt("a")
    throttle.succeeded("a")
    assert throttle.attempt("a") == 0 and throttle.attempt("a") == 0
    assert throttle.attempt("a") > 0


def test_attempts_sent_together_count_before_their_passwords_are_checked() -> None:
    # 30 guesses at once used to pass a limit of 10: each was checked before any failure was recorded.
    throttle = LoginThrottle(max_failures=10, window_s=60)
    with ThreadPoolExecutor(30) as pool:
        waits = list(pool.map(lambda _: throttle.attempt("10.77.0.2"), range(30)))
    assert sum(w == 0 for w in waits) == 10 and all(w > 0 for w in waits if w != 0)


def test_expired_addresses_are_forgotten(monkeypatch) -> None:
    monkeypatch.setattr(throttle_module, "PRUNE_ABOVE", 4)
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window_s=60, clock=clock)
    for i in range(4):
        throttle.attempt(f"10.0.0.{i}")
    clock.now += 61
    throttle.attempt("10.0.1.1")
    assert list(throttle._failures) == ["10.0.1.1"]
