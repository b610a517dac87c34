"""Create driftline's public topics when they are missing (the worker does this at start-up)."""
from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.producer import bootstrap_of

log = logging.getLogger(__name__)


def ensure_topics(broker_url: str, names, partitions: int, replication: int = 1, **client_options) -> list[str]:
    """Create each topic of ``names`` that does not exist yet; return the ones created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_of(broker_url), client_id="driftline-admin",
                             **client_options)
    try:
        existing = set(admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(n, partitions, replication) for n in missing])
            except TopicAlreadyExistsError:  # another worker won the race
                pass
            log.info("created topics %s with %d partitions", missing, partitions)
        return missing
    finally:
        admin.close()
