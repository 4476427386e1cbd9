"""Topic administration: create the topics Foresight uses, with their partitions."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


async def ensure_topics_async(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in missing]
                )
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


def ensure_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    """Create the missing topics among ``names`` (existing ones are left alone)."""
    asyncio.run(ensure_topics_async(bootstrap, names, partitions))
