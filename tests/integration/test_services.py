"""The local services the project starts itself: broker and Samba AD DC."""

from __future__ import annotations

from runtime import kafka
from schemas import topics
from schemas.config import KafkaSettings


async def test_broker_answers_with_e2ad_topics(kafka_settings: KafkaSettings) -> None:
    admin = kafka.admin(kafka_settings)
    await admin.start()
    try:
        names = set(await admin.list_topics())
        described = await admin.describe_topics([topics.AD_DESIRED, topics.GRAPH_NOTIFICATIONS])
    finally:
        await admin.close()
    assert set(topics.ALL_TOPICS) <= names
    partitions = {d["topic"]: len(d["partitions"]) for d in described}
    assert partitions == {topics.AD_DESIRED: 4, topics.GRAPH_NOTIFICATIONS: 1}


def test_dc_has_the_2016_schema_anchor_attribute(ad_admin, test_ou: str) -> None:
    group = f"CN=g1,{test_ou}"
    assert ad_admin.add(
        group,
        "group",
        {"sAMAccountName": "e2ad-svc-test", "msDS-ExternalDirectoryObjectId": "Group_x", "groupType": -2147483640},
    ), ad_admin.result
    ad_admin.search(test_ou, "(msDS-ExternalDirectoryObjectId=Group_x)", attributes=["groupType"])
    assert [e.entry_dn for e in ad_admin.entries] == [group]
