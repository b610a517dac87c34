"""The aiokafka clients the worker runs beside Faust's own, built from the settings.

Faust's consumer reads the internal topic; the ingest stage (:mod:`streams.ingest`) and the
gap filler (:mod:`streams.gaps`) run plain aiokafka clients with the same broker and
credentials. Each factory returns an unstarted client: aiokafka's clients belong to the
event loop that starts them, so they are built when their service starts, not here.
"""
from __future__ import annotations

from streams import config


class KafkaClients:
    """Factories of the worker's aiokafka clients: ``settings`` (streams.config.Settings) and the
    Faust app's configuration ``conf`` (its broker list, credentials and TLS context)."""

    def __init__(self, settings, conf) -> None:
        self.settings = settings
        self.conf = conf

    def connection(self) -> dict:
        """Bootstrap servers and authentication, as Faust's own clients have them."""
        from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list

        return {"bootstrap_servers": server_list(self.conf.broker, 9092),
                **credentials_to_aiokafka_auth(self.conf.broker_credentials, self.conf.ssl_context)}

    def options(self) -> dict:
        """:meth:`connection` with the request timeout of the ingest stage's clients."""
        return {**self.connection(), "request_timeout_ms": 30_000}

    def gap_consumer(self):
        """A group-less consumer for GapFiller, with the worker's broker and credentials."""
        import aiokafka

        return aiokafka.AIOKafkaConsumer(
            group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms, **self.connection())

    def ingest_consumer(self, listener):
        """The ingest stage's consumer: a group of its own, offsets committed by the loop itself."""
        import aiokafka

        settings = self.settings
        consumer = aiokafka.AIOKafkaConsumer(
            group_id=f"{settings.app_id}-ingest", enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=config.CONSUMER_FETCH_BYTES, fetch_max_bytes=4 * config.CONSUMER_FETCH_BYTES,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            # Tansu holds a group join up to half the session timeout: keep it short (as the app's)
            session_timeout_ms=6_000, heartbeat_interval_ms=1_000, **self.options())
        consumer.subscribe([settings.topics.predictions, settings.topics.labels], listener=listener)
        return consumer

    def ingest_producer(self):
        import aiokafka

        # one record per batch on the internal topic, as the app's producer writes it (its highwater
        # is then exact on the embedded broker, see MonitorStage.log_restarted); no idempotent
        # producer on Tansu
        return aiokafka.AIOKafkaProducer(
            acks="all", linger_ms=0, max_batch_size=self.settings.producer_max_batch_size,
            max_request_size=8 * 1024 * 1024, enable_idempotence=False, **self.options())

    def topic_identity(self):
        """A :class:`~streams.topic_identity.TopicIdentity` asking this cluster (kafka-python's
        admin client takes the same connection and credential options as aiokafka's)."""
        from streams.topic_identity import TopicIdentity, admin_describe

        return TopicIdentity(admin_describe({**self.options(), "request_timeout_ms": 10_000}))

    async def previous_group_positions(self, tps) -> dict:
        """Where the app's group (which ran ingest as Faust agents before) committed the input partitions."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(**self.options())
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self.settings.app_id, partitions=list(tps))
        finally:
            await admin.close()
        return {tp: meta.offset for tp, meta in offsets.items()}
