"""The bound children of the metrics that carry labels: one object per label set, made once, so a
recording call is an attribute read and prometheus-client's own increment (`metrics.Metrics`
hands them out)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram


class RpcMetrics:
    """One RPC method's children: its duration, and its count by status code."""

    __slots__ = ("_by_code", "_duration", "_method", "_requests")

    def __init__(self, requests: Counter, duration: Histogram, method: str) -> None:
        self._requests = requests
        self._method = method
        self._duration = duration.labels(method)
        self._by_code: dict[str, Counter] = {}

    def done(self, code: str, seconds: float) -> None:
        """A call ended with status `code` (`OK`, `NOT_FOUND`, …) after `seconds`."""
        self._duration.observe(seconds)
        counter = self._by_code.get(code)
        if counter is None:
            counter = self._by_code[code] = self._requests.labels(self._method, code)
        counter.inc()


class CacheMetrics:
    """One cache's lookups: a hit, a miss, or an error (a failed read, a miss to its caller)."""

    __slots__ = ("_error", "_hit", "_miss")

    def __init__(self, requests: Counter, cache: str) -> None:
        self._hit = requests.labels(cache, "hit")
        self._miss = requests.labels(cache, "miss")
        self._error = requests.labels(cache, "error")

    def hit(self) -> None:
        self._hit.inc()

    def miss(self) -> None:
        self._miss.inc()

    def error(self) -> None:
        self._error.inc()


class ChatCallMetrics:
    """One provider and model's chat calls (`gen_ai_*`), its children bound once; implements
    the sources' `ChatCallMetrics` port."""

    __slots__ = ("_duration", "_failed", "_first_chunk", "_input", "_labels", "_ok", "_output")

    def __init__(
        self,
        tokens: Histogram,
        duration: Histogram,
        first_chunk: Histogram,
        labels: tuple[str, ...],
    ) -> None:
        self._labels = labels  # operation, provider, model
        self._duration = duration
        self._ok = duration.labels(*labels, "")  # an empty label is no label to PromQL
        self._first_chunk = first_chunk.labels(*labels)
        self._input = tokens.labels(*labels, "input")
        self._output = tokens.labels(*labels, "output")
        self._failed: dict[str, Histogram] = {}

    def first_chunk(self, seconds: float) -> None:
        self._first_chunk.observe(seconds)

    def succeeded(self, seconds: float) -> None:
        self._ok.observe(seconds)

    def used_tokens(self, input_tokens: int, output_tokens: int) -> None:
        self._input.observe(input_tokens)
        self._output.observe(output_tokens)

    def failed(self, seconds: float, error_type: str) -> None:
        child = self._failed.get(error_type)
        if child is None:
            child = self._failed[error_type] = self._duration.labels(*self._labels, error_type)
        child.observe(seconds)
