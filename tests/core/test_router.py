"""Appendix F, Table 4: module A emits a1, a2; B(a1) -> b1, b2; B(a2) -> b3; C, D sinks."""
import pytest

from distspike.core.router import EventRouter

TABLE4 = {
    "bfs": ["B(a1)", "B(a2)", "C(a1)", "C(a2)", "D(b1)", "D(b2)", "D(b3)"],
    "dfs": ["B(a1)", "D(b1)", "D(b2)", "C(a1)", "B(a2)", "D(b3)", "C(a2)"],
}


class Module:
    def __init__(self, name, log, emits):
        self.name, self.log, self.emits = name, log, emits

    def consume(self, ev):
        if self.name != "A":
            self.log.append(f"{self.name}({ev})")
        yield from self.emits.get(ev, [])


def _route(scheme):
    log = []
    r = EventRouter(scheme)
    r.add("A", Module("A", log, {"in": ["a1", "a2"]}))
    r.add("B", Module("B", log, {"a1": ["b1", "b2"], "a2": ["b3"]}))
    r.add("C", Module("C", log, {}))
    r.add("D", Module("D", log, {}))
    r.bind("A", "B")
    r.bind("A", "C")
    r.bind("B", "D")
    r.feed("A", "consume", "in")
    return log


@pytest.mark.parametrize("scheme", ["bfs", "dfs"])
def test_table4_processing_order(scheme):
    assert _route(scheme) == TABLE4[scheme]


def test_unknown_scheme_and_unbound_module_are_rejected():
    with pytest.raises(ValueError, match="'lifo'"):
        EventRouter("lifo")
    r = EventRouter("bfs")
    with pytest.raises(KeyError, match="'X'"):
        r.bind("X", "Y")
