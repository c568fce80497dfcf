"""The process-level fault-injection checker (tests/etcd_checker.py), short runs.

The long run is ``bench/bench_etcd_checker.py``; docs/ha.md gives its figures.
"""

from __future__ import annotations

from etcd_checker import (
    NUMERIC,
    SEQUENCE,
    SIMPLE,
    Checker,
    CheckerConfig,
    Op,
    rerun_command,
    verify,
)
from etcd_cluster import require_etcd


def op(
    ident: str,
    name: str,
    mode: int,
    enter: float,
    leave: float,
    gen: int,
    quantity: int = 1,
    element: str | None = None,
) -> Op:
    """A granted command as its log would show it."""
    made = Op(ident, 0, 0, name, mode, quantity, started=0.0)
    made.enter, made.leave, made.generation, made.element = enter, leave, gen, element
    made.ended = leave
    return made


def test_verify_finds_each_kind_of_violation() -> None:
    """The rules themselves, on made-up logs: each broken one is reported, the rest not."""
    clean = [
        op("1", SIMPLE, 5, 1.0, 2.0, 10),
        op("2", SIMPLE, 3, 2.5, 3.5, 11),
        op("3", SIMPLE, 1, 3.0, 4.0, 11),  # CR beside PR, granted together
        op("4", "/a/b", 5, 1.0, 2.0, 12),
        op("5", "/a/c", 5, 1.5, 2.5, 13),  # siblings: no conflict
        op("6", NUMERIC, 5, 1.0, 2.0, 14, quantity=2),
        op("7", NUMERIC, 5, 1.2, 2.0, 15, quantity=1),
        op("8", SEQUENCE, 5, 1.0, 2.0, 16, element="1"),
        op("9", SEQUENCE, 5, 1.1, 2.0, 17, element="2"),
    ]
    assert verify(clean) == []
    broken = {
        "overlap": [op("a", "/a", 4, 1.0, 2.0, 1), op("b", "/a/b", 3, 1.5, 2.5, 2)],
        "units": [
            op("a", NUMERIC, 5, 1.0, 2.0, 1, quantity=2),
            op("b", NUMERIC, 5, 1.5, 2.5, 2, quantity=2),
        ],
        "holders of": [
            op(str(i), SEQUENCE, 5, 1.0 + i / 10, 2.0, i, element=str(i)) for i in range(3)
        ],
        "generation order": [op("a", SIMPLE, 5, 1.0, 2.0, 20), op("b", SIMPLE, 4, 3.0, 4.0, 19)],
        "handed out twice": [
            op("a", SEQUENCE, 5, 1.0, 2.0, 1, element="7"),
            op("b", SEQUENCE, 5, 3.0, 4.0, 2, element="7"),
        ],
    }
    for words, ops in broken.items():
        found = verify(ops)
        assert len(found) >= 1 and all(words in v for v in found), (words, found)
    stuck = op("s", SIMPLE, 5, 1.0, 2.0, 1)
    stuck.stuck = True
    assert [v.split(":")[0] for v in verify([stuck])] == ["stuck"]
    late = op("l", SIMPLE, 5, 3.0, 3.5, 1)
    late.ended = 2.0  # its flom had returned
    assert [v.split(":")[0] for v in verify([late])] == ["unmonitored"]


def test_gateways_and_members_killed_stopped_restarted() -> None:
    """3 gateway processes x 6 flom client loops for 18 s while etcd members (the leader
    included) and gateways are SIGKILLed, SIGSTOPped and restarted: no violation."""
    config = CheckerConfig(seconds=18, gateways=3, clients=6, seed=18, fault_gap_s=(0.3, 1.5))
    report = Checker(config, require_etcd()).run()
    assert report.violations == [], report.summary() + "\nrerun: " + rerun_command(config)
    kinds = {f.kind for f in report.faults}
    assert len(report.faults) >= 4 and any(k.startswith("member") for k in kinds), kinds
    assert len(report.granted) >= 10, report.summary()
    assert {op.name for op in report.granted} >= {SIMPLE, NUMERIC, SEQUENCE, "/a/b"}


def test_independent_lock_spaces_are_caught() -> None:
    """The negative control: each gateway on a key prefix of its own, so nothing orders
    holders on different gateways; the checker must report the overlaps."""
    config = CheckerConfig(
        seconds=6, gateways=2, clients=4, seed=3, faults=False, split_prefixes=True,
        hold_ms=(2000, 3000), resources=((SIMPLE, 1),),
    )  # fmt: skip
    report = Checker(config, require_etcd()).run()
    assert any(v.startswith("overlap") for v in report.violations), report.summary()


def test_memory_daemons_killed_stopped_and_exited() -> None:
    """The memory backend under the same load while its daemons are SIGKILLed (the next
    one keeps a lock-delay), SIGTERMed, stopped with ``flom -X`` (kept until their
    holders' commands end) and paused: no two holders across a restart (issue 16)."""
    config = CheckerConfig(
        seconds=12, gateways=1, clients=4, seed=7, fault_gap_s=(0.5, 1.5), backend="memory"
    )
    report = Checker(config, "").run()
    assert report.violations == [], report.summary() + "\nrerun: " + rerun_command(config)
    assert len(report.faults) >= 3 and len(report.granted) >= 8, report.summary()
