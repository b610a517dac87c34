"""BatchProducer: per-model micro-batches, each keyed by its model (one partition per model, so the
worker reads a model's events in the order they were added). Unit test of the one class: the Kafka
client is a recorder of what it is asked to send."""
import orjson

from streams.producer import BatchProducer


class Recorder:
    def __init__(self):
        self.sent = []

    def send(self, topic, key=None, value=None):
        self.sent.append((topic, key, orjson.loads(value)))

    def flush(self, timeout=None):
        pass


def test_events_are_batched_per_model_and_keyed_by_it_in_the_order_added():
    client = Recorder()
    with BatchProducer("127.0.0.1:9", "preds", batch_size=3, linger=3600, producer=client) as out:
        for i in range(8):
            out.add({"model": "a" if i % 4 else "b", "i": i})
    assert client.sent == [
        ("preds", b"a", [{"model": "a", "i": 1}, {"model": "a", "i": 2}, {"model": "a", "i": 3}]),
        ("preds", b"a", [{"model": "a", "i": 5}, {"model": "a", "i": 6}, {"model": "a", "i": 7}]),
        ("preds", b"b", [{"model": "b", "i": 0}, {"model": "b", "i": 4}]),
    ]
    assert out.messages == 3


def test_single_event_messages_when_batch_size_is_one():
    client = Recorder()
    out = BatchProducer("127.0.0.1:9", "labels", batch_size=1, producer=client)
    out.add({"model": "m", "label": True})
    out.close()
    assert client.sent == [("labels", b"m", {"model": "m", "label": True})]


def test_linger_sends_every_model_pending():
    client = Recorder()
    out = BatchProducer("127.0.0.1:9", "preds", batch_size=100, linger=0.0, producer=client)
    out.add({"model": "a", "i": 0})
    assert client.sent == [("preds", b"a", [{"model": "a", "i": 0}])]
