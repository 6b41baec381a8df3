"""Tokens by model over one run: the `models` list of its terminal event (docs/runtime.md).

The engine hands every `node_completed` event's data to `ModelUsage.add`; the run's
`execution_completed`, `_failed` or `_cancelled` carries `to_list()` (left out when empty).
An event counts under the model it names (`model`: `{"provider", "name"}`), or under provider
and model `""` when it reports `usage` without naming a model (a plugin's node):

- a provider call (`cache` absent or `"miss"`): one call, its prompt tokens as `input_tokens`,
  its completion tokens as `output_tokens`;
- a reply from the response cache (`cache: "hit"`): no call and no tokens spent; its
  `cached_tokens` (the tokens the kept reply cost when it was made) count as the `cached_tokens`
  of the model that made that reply, which the event names from the cache entry
  (`nodes/chat.py`). An entry that does not know its model counts under `""`.

Failed attempts are not counted: their events report no usage, as the run's `usage` does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentflow_grpc.model.events import NO_USAGE, TokenUsage


@dataclass(slots=True)
class _Tally:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


class ModelUsage:
    """Calls and tokens per (provider, model), summed from a run's completed node attempts."""

    __slots__ = ("_by_model",)

    def __init__(self) -> None:
        self._by_model: dict[tuple[str, str], _Tally] = {}

    def add(self, data: Mapping[str, Any]) -> None:
        """Count one `node_completed` event's data."""
        model = data.get("model")
        usage = data.get("usage")
        spent = TokenUsage.from_dict(usage) if isinstance(usage, dict) else NO_USAGE
        if isinstance(model, dict):
            key = (str(model.get("provider") or ""), str(model.get("name") or ""))
        elif spent != NO_USAGE:
            key = ("", "")
        else:
            return  # no model call and no tokens: nothing to count
        tally = self._by_model.get(key)
        if tally is None:
            tally = self._by_model[key] = _Tally()
        if data.get("cache") != "hit":
            tally.calls += 1
        tally.input_tokens += spent.prompt_tokens
        tally.output_tokens += spent.completion_tokens
        tally.cached_tokens += spent.cached_tokens
        tally.cache_read_tokens += spent.cache_read_tokens
        tally.cache_write_tokens += spent.cache_write_tokens

    def to_list(self) -> list[dict[str, Any]]:
        """`[{provider, model, calls, input_tokens, output_tokens, cached_tokens}]`, by
        provider and model, with `cache_read_tokens` / `cache_write_tokens` (of input_tokens,
        the provider's prompt cache) where not 0; empty when no attempt called a model or
        reported tokens."""
        models = []
        for (provider, model), tally in sorted(self._by_model.items()):
            entry: dict[str, Any] = {
                "provider": provider,
                "model": model,
                "calls": tally.calls,
                "input_tokens": tally.input_tokens,
                "output_tokens": tally.output_tokens,
                "cached_tokens": tally.cached_tokens,
            }
            for name in ("cache_read_tokens", "cache_write_tokens"):
                if count := getattr(tally, name):
                    entry[name] = count
            models.append(entry)
        return models
