"""Live progress of a run in the terminal: one row per node (status, attempt, time, tokens).

On a terminal the table redraws in place (rich's Live); otherwise each change is one line, so
logs and CI output stay readable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.spec import WorkflowSpec

_STYLES = {
    "pending": "dim",
    "running": "cyan",
    "retrying": "yellow",
    "done": "green",
    "failed": "red",
    "not run": "dim",
}


@dataclass
class _NodeRow:
    node_type: str
    status: str = "pending"
    attempt: int = 0
    duration_ms: float | None = None
    tokens: int = 0
    streamed: str = ""
    detail: str = ""


@dataclass
class RunProgress:
    spec: WorkflowSpec
    console: Console
    rows: dict[str, _NodeRow] = field(init=False)
    _live: Live | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.rows = {node.id: _NodeRow(node.type) for node in self.spec.nodes}

    def __enter__(self) -> RunProgress:
        if self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=8)
            self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)

    def update(self, event: ExecutionEvent) -> None:
        if event.is_terminal:
            for pending in (r for r in self.rows.values() if r.status == "pending"):
                pending.status = "not run"  # a route not taken, or a run that ended early
            return self._refresh()
        row = self.rows.get(event.node_id or "")
        if row is None:
            return
        data = event.data
        if event.type is EventType.NODE_STARTED:
            row.status, row.attempt, row.streamed, row.detail = (
                "running",
                event.attempt or 1,
                "",
                "",
            )
        elif event.type is EventType.NODE_TOKEN:
            row.streamed = (row.streamed + data["text"])[-200:]
            return self._refresh()
        elif event.type is EventType.NODE_COMPLETED:
            row.status, row.duration_ms = "done", data["duration_ms"]
            row.tokens += data.get("usage", {}).get("total_tokens", 0)
        elif event.type is EventType.NODE_FAILED:
            row.status = "retrying" if data["will_retry"] else "failed"
            row.duration_ms = data["duration_ms"]
            row.detail = f"{data['code']}: {data['message']}"
            if data["will_retry"]:
                row.detail += f" (retry in {data['retry_in']:.1f} s)"
        if self._live is None:
            self._print_line(event.node_id or "", row)
        self._refresh()
        return None

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._table())

    def _print_line(self, node_id: str, row: _NodeRow) -> None:
        parts = [f"{node_id}: {row.status}", f"attempt {row.attempt}"]
        if row.duration_ms is not None and row.status != "running":
            parts.append(f"{row.duration_ms / 1000:.2f} s")
        if row.tokens:
            parts.append(f"{row.tokens} tokens")
        if row.detail:
            parts.append(row.detail)
        self.console.print(Text(" · ".join(parts), style=_STYLES[row.status]))

    def _table(self) -> Table:
        table = Table(title=self.spec.title or self.spec.name, expand=True)
        for column in ("node", "type", "status", "attempt", "time", "tokens"):
            table.add_column(column, no_wrap=True, min_width=len(column))
        table.add_column("latest", no_wrap=True, overflow="ellipsis", ratio=1)
        for node_id, row in self.rows.items():
            time_text = f"{row.duration_ms / 1000:.2f} s" if row.duration_ms is not None else ""
            latest = row.detail or row.streamed.replace("\n", " ")[-60:]
            table.add_row(
                node_id,
                row.node_type,
                Text(row.status, style=_STYLES[row.status]),
                str(row.attempt or ""),
                time_text,
                str(row.tokens or ""),
                latest,
            )
        return table


def summary(event: ExecutionEvent) -> dict[str, Any]:
    """What the terminal shows when a run ends."""
    data = dict(event.data)
    data["status"] = event.type.value.removeprefix("execution_")
    return data
