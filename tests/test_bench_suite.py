"""bench/suite.py's choice of the tests that stand for a baseline's."""

from __future__ import annotations

from bench.suite import stand_for


def test_a_baseline_test_is_kept_exactly_or_by_its_new_parameters() -> None:
    base = ["t/a.py::one", "t/a.py::two", "t/a.py::three[x]", "t/b.py::gone"]
    now = [
        "t/a.py::one",
        "t/a.py::two[box]",
        "t/a.py::two[cluster]",
        "t/a.py::twofold",  # another test whose name begins the same: not a stand-in
        "t/a.py::three[x]",
        "t/c.py::new",
    ]
    kept, chosen = stand_for(base, now)
    assert kept == ["t/a.py::one", "t/a.py::two", "t/a.py::three[x]"]
    assert chosen == ["t/a.py::one", "t/a.py::two[box]", "t/a.py::two[cluster]", "t/a.py::three[x]"]
