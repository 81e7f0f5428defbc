from types import SimpleNamespace

from tasks.errors import ConfigurationError
from tasks.retry_policy import backoff_delays, network_task_options, retry_unless_non_retryable


def test_delays_double_and_stay_within_jitter_and_cap() -> None:
    for _ in range(50):
        delays = backoff_delays(6, base_s=1.0, cap_s=10.0, jitter=0.5)
        assert len(delays) == 5
        for n, delay in enumerate(delays):
            nominal = min(10.0, 2**n)
            assert 0.5 * nominal <= delay <= 1.5 * nominal


def test_no_delay_for_a_single_attempt() -> None:
    assert backoff_delays(1, base_s=1.0) == []


def _state(exc: Exception | None) -> SimpleNamespace:
    def result() -> None:
        if exc:
            raise exc

    return SimpleNamespace(result=result)


def test_bad_input_is_not_retried_but_network_errors_are() -> None:
    assert retry_unless_non_retryable(None, None, _state(ConfigurationError("bad block"))) is False
    assert retry_unless_non_retryable(None, None, _state(ConnectionResetError())) is True


def test_network_task_options_use_backoff_with_jitter() -> None:
    options = network_task_options(retries=4)
    assert options["retries"] == 4 and options["retry_jitter_factor"] == 0.5
    delays = options["retry_delay_seconds"](4)
    assert delays == [1.0, 2.0, 4.0, 8.0]
