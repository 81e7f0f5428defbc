from dataclasses import dataclass

from tasks.batching import batches_by_size


@dataclass
class Item:
    name: str
    size: int


def test_batches_respect_both_limits_and_keep_order() -> None:
    items = [Item(str(n), 10) for n in range(7)]
    assert [[i.name for i in b] for b in batches_by_size(items, max_items=3, max_bytes=1000)] == [
        ["0", "1", "2"], ["3", "4", "5"], ["6"]
    ]
    assert [len(b) for b in batches_by_size(items, max_items=100, max_bytes=25)] == [2, 2, 2, 1]


def test_an_oversized_item_gets_a_batch_of_its_own_and_nothing_is_dropped() -> None:
    items = [Item("a", 5), Item("huge", 500), Item("b", 5)]
    out = batches_by_size(items, max_items=10, max_bytes=100)
    assert [[i.name for i in b] for b in out] == [["a"], ["huge"], ["b"]]
    assert batches_by_size([], max_items=1, max_bytes=1) == []
