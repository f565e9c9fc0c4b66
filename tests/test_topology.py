"""The topology takes replication and min.insync.replicas from the settings (a cluster needs 3 and 2).

On the 3-broker cluster itself this is checked by the chaos case ``test_kill9_one_broker_of_three``.
"""

from __future__ import annotations

import pytest
from kafka.admin import ConfigResource, ConfigResourceType
from pydantic import ValidationError

from newsflow.kafka_io import make_admin
from newsflow.settings import Settings
from newsflow.topology import topics
from tests.support.stages import wait_until


def test_every_topic_carries_min_insync_replicas_from_the_settings():
    specs = topics(Settings(topic_replication=3, topic_min_insync=2))
    assert len(specs) == 5
    assert {spec.config["min.insync.replicas"] for spec in specs} == {"2"}


def test_min_insync_above_the_replication_is_refused():
    with pytest.raises(ValidationError, match="NEWSFLOW_TOPIC_MIN_INSYNC=2 exceeds NEWSFLOW_TOPIC_REPLICATION=1"):
        Settings(topic_min_insync=2)


@pytest.mark.integration
def test_created_topics_have_the_settings_replication_and_min_insync(settings):
    """On the single local broker both are 1; what matters is that they come from the settings."""
    names = [spec.name for spec in topics(settings)]
    admin = make_admin(settings)
    def described_in_full():  # just created: the broker's metadata may lag the controller's a moment
        found = admin.describe_topics(names)
        return found if all(t["partitions"] for t in found) else None

    try:
        described = wait_until(described_in_full, timeout=30, what="the new topics in the broker's metadata")
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n, ["min.insync.replicas"])
                                          for n in names], config_filter="all")
    finally:
        admin.close()
    assert {len(p["replica_nodes"]) for t in described for p in t["partitions"]} == {settings.topic_replication}
    assert {c["min.insync.replicas"]["value"] for c in configs["topic"].values()} == {str(settings.topic_min_insync)}
    assert {c["min.insync.replicas"]["config_source"] for c in configs["topic"].values()} == {"DYNAMIC_TOPIC_CONFIG"}
