"""Event-level routers of the paper's Appendix F: the slow, literal reference.

Modules are any objects whose bound methods take one event and return (or yield)
the events they emit. Bindings ``src -> (dst, method)`` are kept in order: that is
the consumer order.

- Breadth-first (Table 4, left): all events one module emits while consuming a work
  item are queued, as one item per consumer, before any of their consumers run;
  items are served in FIFO order.
- Depth-first (Table 4, right): each emitted event is consumed, recursively, by each
  consumer in turn before the emitting module emits its next one (methods that
  ``yield`` are resumed only after the recursion returns).

Each module consumes its own input events one by one, in arrival order, in both.
"""
from __future__ import annotations

from collections import deque


class EventRouter:
    """Routes events between named modules in breadth-first or depth-first order."""

    def __init__(self, scheme: str):
        if scheme not in ("bfs", "dfs"):
            raise ValueError(f"routing={scheme!r} is not one of ['bfs', 'dfs']")
        self.scheme = scheme
        self.modules: dict[str, object] = {}
        self.consumers: dict[str, list[tuple[str, str]]] = {}

    def add(self, name: str, module) -> None:
        self.modules[name] = module
        self.consumers.setdefault(name, [])

    def bind(self, src: str, dst: str, method: str = "consume") -> None:
        """Send every event ``src`` emits to ``dst.method``, after the consumers bound earlier."""
        for name in (src, dst):
            if name not in self.modules:
                raise KeyError(f"module {name!r} is not registered with the router")
        self.consumers[src].append((dst, method))

    def feed(self, dst: str, method: str, event) -> None:
        """A root event: deliver it and route everything it causes until all settles."""
        if self.scheme == "bfs":
            self._breadth(dst, method, event)
        else:
            self._depth(dst, method, event)

    def _emit(self, dst: str, method: str, event):
        out = getattr(self.modules[dst], method)(event)
        return () if out is None else out

    def _breadth(self, dst: str, method: str, event) -> None:
        queue = deque([(dst, method, [event])])
        while queue:
            name, meth, events = queue.popleft()
            emitted = [o for ev in events for o in self._emit(name, meth, ev)]
            if emitted:
                queue.extend((c, m, emitted) for c, m in self.consumers[name])

    def _depth(self, dst: str, method: str, event) -> None:
        for out in self._emit(dst, method, event):
            for c, m in self.consumers[dst]:
                self._depth(c, m, out)
