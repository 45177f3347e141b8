"""Reads exported EDN histories with edn_format, as a Clojure tool would,
and checks their shape: every event a map with Jepsen's keys, indexes
0, 1, 2, ... in order, each process's invocation followed by its own
completion before it invokes again, and :info only at the end.

    usage: edn_check.py FILE.history.edn...
"""
import sys

import edn_format
from edn_format import Keyword

TYPES = {Keyword(t) for t in ("invoke", "ok", "fail", "info")}
FS = {Keyword(f) for f in ("read", "write", "cas")}
KEYS = [Keyword(k) for k in ("index", "type", "f", "value", "process", "time")]


def check(path):
    with open(path, encoding="utf-8") as f:
        events = edn_format.loads_all(f.read())
    in_flight = {}
    counts = {t: 0 for t in TYPES}
    seen_info = False
    for i, event in enumerate(events):
        missing = [k for k in KEYS if k not in event]
        assert not missing, f"{path}: event {i} lacks {missing}"
        assert event[Keyword("index")] == i, f"{path}: event {i} has index {event[Keyword('index')]}"
        kind, f = event[Keyword("type")], event[Keyword("f")]
        assert kind in TYPES and f in FS, f"{path}: event {i}: {kind} {f}"
        key, _value = event[Keyword("value")]
        assert isinstance(key, str), f"{path}: event {i}: key {key!r}"
        process = event[Keyword("process")]
        counts[kind] += 1
        if kind == Keyword("invoke"):
            assert not seen_info, f"{path}: event {i}: an invocation after an :info"
            assert process not in in_flight, f"{path}: process {process} invoked twice"
            in_flight[process] = (f, key)
        else:
            seen_info |= kind == Keyword("info")
            assert in_flight.pop(process, None) == (f, key), f"{path}: event {i} completes nothing"
    assert not in_flight, f"{path}: operations never completed: {in_flight}"
    summary = ", ".join(f"{counts[Keyword(t)]} {t}" for t in ("invoke", "ok", "fail", "info"))
    print(f"{path}: {len(events)} events read by edn_format ({summary})")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path in sys.argv[1:]:
        check(path)
