"""Source positions: how the monitor stage, and an audit after it, tell re-deliveries apart.

Ingest is at-least-once: after a crash it forwards again what it had forwarded but
not committed, at new offsets of the internal topic. Each internal message carries
its events' source positions as runs ``[partition, offset, first index, count]``
(the index counts this model's events within that source message). Per source
partition those positions only grow, so an event at or below the last position
applied is a re-delivery. The monitor stage (streams.monitor_stage) and ``driftline audit``
(streams.audit) apply this same rule, so an audit finds the events the window held.
"""
from __future__ import annotations


def fresh(marks: dict, field: str, items: list, runs: list | None) -> tuple[list, list]:
    """The items past ``marks`` (updated in place), and their source partitions as runs
    ``[(partition, count), ...]``. Without runs (an older producer of the internal topic),
    every item is fresh.

    >>> marks = {}
    >>> fresh(marks, "p", ["a", "b", "c"], [[0, 7, 0, 2], [1, 3, 0, 1]])
    (['a', 'b', 'c'], [(0, 2), (1, 1)])
    >>> fresh(marks, "p", ["b", "c", "d"], [[0, 7, 1, 1], [1, 3, 0, 1], [1, 4, 0, 1]])  # b, c again
    (['d'], [(1, 1)])
    """
    if not runs:
        return items, [(None, len(items))]
    found, sources, start = [], [], 0
    for partition, offset, first, count in runs:
        key = f"{field}@{partition}"          # next to the internal offsets in a monitor's applied_offsets
        last_offset, last_index = marks.get(key, (-1, -1))
        if (offset, first + count - 1) > (last_offset, last_index):
            skip = max(0, last_index - first + 1) if offset == last_offset else 0
            found.extend(items[start + skip:start + count])
            sources.append((partition, count - skip))
            marks[key] = (offset, first + count - 1)
        start += count
    return found, sources


def by_key(messages, key_of) -> dict:
    """Group the valid events of a batch by monitor key: ``{key: (items, runs)}``, ``runs`` being
    each item's source position ``[partition, offset, first index, count]``.

    ``messages`` yields ``(partition, offset, items)`` per source message. A message delivered
    twice in one batch gets a run per copy, so :func:`fresh` keeps it once; merging the copies
    into one run of twice the count (as a check on "same offset as the last run" did) made
    both copies look fresh, and a model counted one message twice.

    >>> grouped = by_key([(0, 7, ["a", "b"]), (0, 7, ["a", "b"]), (1, 3, ["c"])], key_of=lambda e: "m")
    >>> grouped["m"][1]
    [[0, 7, 0, 2], [0, 7, 0, 2], [1, 3, 0, 1]]
    >>> fresh({}, "p", *grouped["m"])
    (['a', 'b', 'c'], [(0, 2), (1, 1)])
    """
    grouped: dict = {}
    for partition, offset, items in messages:
        started = set()
        for item in items:
            key = key_of(item)
            entries, runs = grouped.setdefault(key, ([], []))
            entries.append(item)
            if key in started:
                runs[-1][3] += 1
            else:
                started.add(key)
                runs.append([partition, offset, 0, 1])
    return grouped
