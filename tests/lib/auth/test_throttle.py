from __future__ import annotations

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
        assert throttle.wait_s("10.0.0.5") == 0
        throttle.failed("10.0.0.5")
        clock.now += 10
    assert throttle.wait_s("10.0.0.5") == 30  # the first failure (t=1000) expires at t=1060; now t=1030
    assert throttle.wait_s("10.0.0.6") == 0  # other addresses are not affected
    clock.now += 30
    assert throttle.wait_s("10.0.0.5") == 0


def test_a_successful_login_forgets_the_failures() -> None:
    throttle = LoginThrottle(max_failures=2, window_s=60, clock=Clock())
    throttle.failed("a")
    throttle.succeeded("a")
    throttle.failed("a")
    assert throttle.wait_s("a") == 0
