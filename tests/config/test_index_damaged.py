"""A config index with the right fingerprint but missing or malformed fields is stale (issue 25):
ignored, and rewritten by the next full load, instead of a KeyError in `clbench list`."""
from __future__ import annotations

import json

import pytest

from clbench.config import index


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path))
    index.invalidate()
    yield tmp_path
    index.invalidate()


def _write(data: dict) -> None:
    path = index.index_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    index.invalidate()


@pytest.mark.parametrize("damage", [
    lambda d: d.pop("groups"),
    lambda d: d.pop("listing"),
    lambda d: d["registries"].update(strategy=["not", "a", "mapping"]),
    lambda d: d["groups"].update(strategy={"er": {"module": 3}}),
    lambda d: d["groups"].update(strategy={"er": {"module": "m", "class": "C", "fields": [["lr"]]}}),
    lambda d: d["listing"].pop("scenarios"),
])
def test_an_index_with_the_right_fingerprint_but_missing_fields_is_stale_and_rebuilt(cache, damage):
    def good(fp: str) -> dict:
        return {"version": index.INDEX_VERSION, "fingerprint": fp, "registries": {"strategy": {"er": "m"}},
                "groups": {"strategy": {"er": {"module": "m", "class": None, "fields": None, "value": {"lr": 0.1}}}},
                "listing": {"strategies": {"er": {}}, "scenarios": {}}}

    data = good(index.fingerprint())
    _write(data)
    assert index.is_fresh()
    damage(data)
    _write(data)
    assert not index.is_fresh() and index.entry("strategy", "er") is None and index.listing() is None
    index.after_full_load(good)  # the next full load rewrites it
    assert index.is_fresh() and index.listing() == {"strategies": {"er": {}}, "scenarios": {}}
