"""Flow-run slugs: "adjective-animal" from our own word lists."""

from __future__ import annotations

import random
import re

from flowpod._common.names import ADJECTIVES, ANIMALS, generate_slug

WORD = re.compile(r"[a-z]+")


def test_word_lists_are_large_unique_and_plain_ascii() -> None:
    for words in (ADJECTIVES, ANIMALS):
        assert len(words) >= 150
        assert len(set(words)) == len(words)
        assert all(WORD.fullmatch(word) for word in words)


def test_slug_shape() -> None:
    for _ in range(200):
        adjective, animal = generate_slug().split("-")
        assert adjective in ADJECTIVES and animal in ANIMALS


def test_seeded_rng_is_reproducible() -> None:
    first = [generate_slug(random.Random(11)) for _ in range(3)]
    assert first == [generate_slug(random.Random(11)) for _ in range(3)]
    rng_a, rng_b = random.Random(5), random.Random(5)
    assert [generate_slug(rng_a) for _ in range(20)] == [generate_slug(rng_b) for _ in range(20)]


def test_slugs_vary() -> None:
    rng = random.Random(99)
    slugs = {generate_slug(rng) for _ in range(1000)}
    # 200+ x 200+ combinations: 1,000 draws collide rarely.
    assert len(slugs) > 950
    assert len({slug.split("-")[0] for slug in slugs}) > 100
    assert len({slug.split("-")[1] for slug in slugs}) > 100
