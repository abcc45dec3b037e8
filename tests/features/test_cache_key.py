"""The pooled-feature cache key changes with everything the pooled matrices depend on."""

from __future__ import annotations

from dataclasses import replace

from emofusion.data.manifest import load_manifest
from emofusion.features import pooling
from emofusion.features.cache import PooledCache


def test_the_cache_key_includes_the_pooling_code_version_and_the_utterance_ids(clean_demo_csv,
                                                                               monkeypatch):
    manifest = load_manifest(clean_demo_csv)
    cache = PooledCache(None)
    key = cache.key(manifest, "visual")
    assert cache.key(load_manifest(clean_demo_csv), "visual") == key  # stable

    renamed = manifest.table.assign(utterance_id=[f"u{i:04d}" for i in range(len(manifest))])
    assert renamed["visual_features"].tolist() == manifest.paths("visual")  # same files
    assert cache.key(replace(manifest, table=renamed), "visual") != key
    reordered = manifest.table.assign(utterance_id=manifest.table["utterance_id"][::-1].to_numpy())
    assert cache.key(replace(manifest, table=reordered), "visual") != key

    monkeypatch.setattr(pooling, "POOLING_VERSION", pooling.POOLING_VERSION + 1)
    assert cache.key(manifest, "visual") != key
