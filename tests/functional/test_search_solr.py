"""Contract test of the Solr backend: runs whenever SOLR_URL names a collection created from
models_db/search/solr_conf (the suite has no Solr of its own)."""
import pytest

import settings
from tests.helpers import catalog_model

pytestmark = pytest.mark.skipif(not settings.get().solr_url, reason="SOLR_URL is not set")


def test_solr_backend_contract(alice):
    from models_db import search
    from models_db.search.base import SearchQuery
    backend = search.get_backend("solr")
    backend.clear()
    land = catalog_model(alice[0], "Mountain Landscape", tags=["landscape"], description="vistas at dawn")
    neon = catalog_model(alice[0], "Neon Alley", tags=["cyberpunk"], description="A cyberpunk street in the rain")
    search.index_models([land.id, neon.id], backend)
    backend.commit()
    assert backend.count() == 2
    hits = lambda **kw: [h.id for h in backend.search(SearchQuery(**kw)).hits]  # noqa: E731
    assert hits(text="mount", hybrid=False) == [land.id]
    assert hits(text="lanscape", hybrid=False) == [land.id]
    assert hits(text="rainy neon city at night")[0] == neon.id
    assert hits(tags=["cyberpunk"]) == [neon.id]
    assert backend.search(SearchQuery(text="landscape", hybrid=False)).facets["tags"] == {"landscape": 1}
    assert backend.suggest("mou") == ["Mountain Landscape"]
    backend.delete([land.id])
    assert hits(text="mount", hybrid=False) == []
