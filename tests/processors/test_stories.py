"""Content hash, MinHash signature and story labelling (processors/enrich/stories.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from processors.enrich.stories import (
    NUM_PERM, StoryIndex, content_hash, decode_signature, encode_signature, text_minhash, topic_set,
)

WIRE = (
    "The harbour council voted on Tuesday to rebuild the old lighthouse, which storms damaged in 2019. "
    "The work will cost 2.3 million euros and start in spring, the mayor said after a long evening session. "
    "Fishermen had asked for the light to return because fog often hides the rocks at the harbour entrance. "
    "A local foundation will pay a third of the bill and volunteers will repaint the tower next summer."
)
REWRITE = (
    "Fog, rocks and a missing light: fishermen won their campaign this week. Councillors backed a plan for "
    "the lighthouse that a 2019 storm left dark, and the mayor promised that builders arrive in spring."
)
OTHER = "The regional football cup final ended in a draw after extra time and penalties were postponed."
T0 = datetime(2024, 3, 5, 9, 0, tzinfo=UTC)
TOPICS = topic_set(["Anna Berg"], ["Harbour Council"], ["Harbourtown"], ["old lighthouse", "fishermen fog"])


def test_content_hash_is_exact():
    assert content_hash(WIRE) == content_hash(WIRE)
    assert content_hash(WIRE) != content_hash(WIRE + " ")


def test_signature_round_trip():
    m = text_minhash(WIRE)
    encoded = encode_signature(m)
    assert len(encoded) == len(encode_signature(text_minhash(OTHER)))
    assert decode_signature(encoded).jaccard(m) == 1.0
    with pytest.raises(ValueError):
        decode_signature(encoded[: NUM_PERM])


def test_near_duplicates_share_a_story():
    idx = StoryIndex(window=100)
    first = idx.assign("a", text_minhash(WIRE), set(), T0)
    assert first == "a"  # a new story is named after its first article
    copy = WIRE.replace("Tuesday", "Tuesday evening") + " Share this story."
    assert idx.assign("b", text_minhash("Harbour Gazette. " + copy), set(), T0) == "a"
    assert idx.assign("c", text_minhash(OTHER), set(), T0) == "c"


def test_same_topic_within_the_time_window_shares_a_story():
    idx = StoryIndex(window=100)
    idx.assign("a", text_minhash(WIRE), TOPICS, T0)
    assert idx.assign("b", text_minhash(REWRITE), TOPICS | {"spring"}, T0 + timedelta(hours=5)) == "a"
    later = "Ten days on, scaffolding went up around the tower and the first crane arrived at the quay."
    assert idx.assign("c", text_minhash(later), TOPICS, T0 + timedelta(days=10)) == "c"  # same topic, too late
    assert idx.assign("d", text_minhash(OTHER), {"football", "cup"}, T0) == "d"


def test_labels_are_stable_on_reprocessing_and_the_window_is_bounded():
    idx = StoryIndex(window=3)
    idx.assign("a", text_minhash(WIRE), set(), T0)
    idx.assign("b", text_minhash(WIRE + " More."), set(), T0)
    assert idx.assign("a", text_minhash(WIRE), set(), T0) == "a"
    for i in range(5):
        idx.assign(f"x{i}", text_minhash(f"{OTHER} {i} " * 3), set(), T0)
    assert len(idx) == 3
    # "a" and "b" left the window: a copy of the wire text starts a new story now.
    assert idx.assign("z", text_minhash(WIRE), set(), T0) == "z"
