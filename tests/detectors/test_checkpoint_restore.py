"""A checkpoint pickled by the monitor of main before the columnar core (fixtures/make_checkpoint_v0.py)
restores, and the restored monitor goes on to emit exactly what that code emitted after it."""
import pathlib
import pickle

import orjson

from tests.detectors.checkpoint_stream import comparable, feed, stream

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def _expected():
    return orjson.loads((FIXTURES / "checkpoint_v0_expected.json").read_bytes())


def _plain(value):
    """JSON-shaped, without the wall-clock ``created_at`` stamps."""
    def strip(item):
        if isinstance(item, dict):
            return {k: strip(v) for k, v in item.items() if k != "created_at"}
        if isinstance(item, list):
            return [strip(v) for v in item]
        return item
    return strip(orjson.loads(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)))


def test_checkpoint_of_the_pickled_format_restores_and_continues_identically():
    monitor = pickle.loads((FIXTURES / "checkpoint_v0.pickle").read_bytes())["monitor"]
    out = feed(monitor, *stream(2400, 1800, seed=2, shift_from=2700))
    expected = _expected()
    assert [kind for kind, _ in out] == [kind for kind, _ in expected["emitted"]]
    assert _plain(comparable(out)) == _plain(expected["emitted"])
    assert _plain(monitor.status()) == _plain(expected["status"])
