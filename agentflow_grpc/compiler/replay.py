"""Replaying a resumed run: node completions restored from its log instead of run again.

A run taken up again after its replica was lost runs its graph from the start, but every node
whose completion the log holds gives back the recorded output at once — no provider call, no
request sent, no event — as Temporal replays a workflow's history. The graph takes the same
path as before (routers' recorded routes, joins fed by the same outputs, loop counters counted
through the replayed visits), so the first node that runs for real is one that had not
completed: a node in flight when the replica stopped, or one not yet reached. Completions of a
node that runs more than once (a loop) are handed back in the order they were recorded.

A node that was in flight (its last attempt started and never ended in the log) is
`interrupted`: its next attempt says so (attempts.py), and an `at_most_once` node fails rather
than repeat a call whose outcome is unknown.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any


class Replay:
    def __init__(
        self, completions: Mapping[str, Sequence[Any]], interrupted: Mapping[str, int]
    ) -> None:
        self._left = {node_id: deque(outputs) for node_id, outputs in completions.items()}
        self._interrupted = dict(interrupted)  # node id → the attempt in flight

    def take(self, node_id: str) -> tuple[bool, Any]:
        """`(True, output)` for the node's next recorded completion; `(False, None)` once
        its recorded completions are used up (it runs)."""
        left = self._left.get(node_id)
        if not left:
            return False, None
        return True, left.popleft()

    def interrupted(self, node_id: str) -> int:
        """The number of the node's attempt that was in flight when the run stopped, for its
        first visit that runs for real (0: none was); asked once."""
        return self._interrupted.pop(node_id, 0)

    @property
    def pending(self) -> int:
        """Recorded completions not handed back yet (0 once the replay has caught up)."""
        return sum(len(left) for left in self._left.values())
