"""Search through the real index of the configured backend (SQLite FTS5 or PostgreSQL) with real
MiniLM embeddings: sync through the queue, typo tolerance, semantic matches, filters, facets, sorts."""
import pytest

from jobs.search import flush_search_index
from models_db import search
from models_db.catalog import Model, ModelVersion, publish_version, set_tags
from models_db.db import transaction
from models_db.search import sync
from tests.conftest import run_jobs
from tests.helpers import auth, catalog_model, cli


@pytest.fixture
def catalog(alice, bob):
    made = {
        "landscape": catalog_model(alice[0], "Mountain Landscape", tags=["landscape", "nature"],
                                   description="Sweeping mountain vistas at dawn", downloads=50, rating=4.0),
        "cyberpunk": catalog_model(alice[0], "Neon Alley", tags=["cyberpunk"], model_type="LORA",
                                   description="A cyberpunk street in the rain, wet asphalt and neon signs",
                                   downloads=10, rating=4.8),
        "lemons": catalog_model(bob[0], "Citrus Still Life", tags=["food"], base_model="SDXL 1.0",
                                description="A bowl of lemons on a wooden table", downloads=5, rating=3.0),
        "cafe": catalog_model(bob[0], "Café Crème", tags=["food", "drink"], base_model="SDXL 1.0",
                              description="Coffee with milk foam", downloads=1, rating=2.0, nsfw=True),
        "draft": catalog_model(bob[0], "Secret Landscape Draft", tags=["landscape"], publish=False),
    }
    flush_search_index.fn()
    return made


def names(client, url, **kw):
    body = client.get(url, **kw).get_json()
    return [m["name"] for m in body["items"]], body


def test_keyword_prefix_diacritics_and_highlights(client, catalog):
    found, body = names(client, "/api/v1/search?q=mount&mode=keyword")
    assert found == ["Mountain Landscape"]
    assert body["hits"][0]["highlights"]["name"] == "<mark>Mountain</mark> Landscape"
    assert names(client, "/api/v1/search?q=creme&mode=keyword")[0] == ["Café Crème"]
    assert names(client, "/api/v1/search?q=neon+signs&mode=keyword")[0] == ["Neon Alley"]


def test_name_outranks_description(client, catalog, alice):
    catalog_model(alice[0], "Lemon Drops", tags=["candy"])
    flush_search_index.fn()
    found, _ = names(client, "/api/v1/search?q=lemon&mode=keyword")
    assert found[0] == "Lemon Drops"


def test_misspelled_query_is_corrected(client, catalog):
    found, body = names(client, "/api/v1/search?q=lanscape&mode=keyword")
    assert found == ["Mountain Landscape"] and body["query"]["corrected"] == "landscape"


def test_semantic_query_finds_related_description(client, catalog):
    found, _ = names(client, "/api/v1/search?q=rainy neon city at night")
    assert found[0] == "Neon Alley"
    assert "Citrus Still Life" not in found
    # keywords alone: no document has every word; "neon" is the one found once words are dropped
    assert names(client, "/api/v1/search?q=rainy neon city at night&mode=keyword")[0] == ["Neon Alley"]


def test_filters_facets_and_visibility(client, catalog, bob):
    found, body = names(client, "/api/v1/search?q=food&mode=keyword")
    assert sorted(found) == ["Café Crème", "Citrus Still Life"]
    assert body["facets"]["baseModel"] == {"SDXL 1.0": 2} and body["facets"]["tags"]["food"] == 2
    assert names(client, "/api/v1/search?q=food&mode=keyword&nsfw=false")[0] == ["Citrus Still Life"]
    assert names(client, "/api/v1/search?types=LORA")[0] == ["Neon Alley"]
    assert sorted(names(client, "/api/v1/search?username=bob")[0]) == ["Café Crème", "Citrus Still Life"]
    assert names(client, "/api/v1/search?tags=drink")[0] == ["Café Crème"]
    assert "Secret Landscape Draft" not in names(client, "/api/v1/search?q=landscape")[0]
    assert "Secret Landscape Draft" in names(client, "/api/v1/search?q=landscape", headers=auth(bob[1]))[0]
    assert client.get("/api/v1/search?sort=Best").status_code == 400
    assert client.get("/api/v1/search?q=x&cursor=!!").status_code == 400


def test_sorts_and_cursor_paging(client, catalog):
    assert names(client, "/api/v1/search?sort=Most Downloaded")[0] == [
        "Mountain Landscape", "Neon Alley", "Citrus Still Life", "Café Crème"]
    assert names(client, "/api/v1/search?sort=Highest Rated")[0][0] == "Neon Alley"
    seen, url = [], "/api/v1/search?sort=Newest&limit=2"
    while url:
        _, body = names(client, url)
        seen += [m["id"] for m in body["items"]]
        url = body["metadata"].get("nextPage", "").replace("http://localhost", "")
    assert len(seen) == len(set(seen)) == 4
    first, body = names(client, "/api/v1/search?q=food&mode=keyword&limit=1")
    second, _ = names(client, body["metadata"]["nextPage"].replace("http://localhost", ""))
    assert len(first) == len(second) == 1 and first != second


def test_models_endpoint_query_uses_the_engine(client, catalog):
    assert [m["name"] for m in client.get("/api/v1/models?query=lanscape").get_json()["items"]] == [
        "Mountain Landscape"]


def test_suggest(client, catalog):
    assert client.get("/api/v1/search/suggest?q=mou").get_json()["suggestions"] == ["Mountain Landscape"]
    assert client.get("/api/v1/search/suggest?q=").get_json()["suggestions"] == []


def test_changes_are_searchable_after_the_flush_and_deletes_disappear(client, catalog, worker):
    model = catalog["lemons"]
    with transaction():
        set_tags(model, ["food", "vintage"])
    assert sync.pending_count() == 1
    run_jobs(worker)  # the write queued a flush on the index queue
    assert sync.pending_count() == 0
    assert names(client, "/api/v1/search?q=vintage&mode=keyword")[0] == ["Citrus Still Life"]
    Model.update(status="Deleted").where(Model.id == model.id).execute()
    sync.mark([model.id])
    run_jobs(worker)
    assert names(client, "/api/v1/search?q=vintage&mode=keyword")[0] == []


def test_crash_mid_flush_loses_nothing(client, catalog, monkeypatch, alice):
    new = catalog_model(alice[0], "Glacier Study", tags=["ice"])
    assert sync.pending_count() >= 1

    def broken(*args, **kwargs):
        raise ConnectionError("index went away")
    monkeypatch.setattr(search.get_backend(), "upsert", broken)
    with pytest.raises(ConnectionError):
        flush_search_index.fn()
    assert new.id in [i for i, _ in sync.take(100)]  # still pending
    monkeypatch.undo()
    flush_search_index.fn()
    assert sync.pending_count() == 0
    assert names(client, "/api/v1/search?q=glacier&mode=keyword")[0] == ["Glacier Study"]


def test_a_change_during_a_flush_stays_pending(catalog):
    model = catalog["cyberpunk"]
    sync.mark([model.id])
    batch = sync.take(10)
    sync.mark([model.id])  # written again while the batch was being indexed
    sync.done(batch)
    assert [i for i, _ in sync.take(10)] == [model.id]


def test_reindex_and_status_cli(catalog):
    search.get_backend().clear()
    assert search.get_backend().count() == 0
    result = cli("search", "reindex")
    assert result.exit_code == 0 and "indexed 5 model(s)" in result.output
    assert search.get_backend().count() == 5
    status = cli("search", "status").output
    assert "documents: 5" in status and "pending: 0" in status


def test_version_base_model_is_indexed(client, catalog):
    with transaction():
        version = ModelVersion.get(ModelVersion.model == catalog["landscape"])
        version.base_model = "Flux.1 D"
        version.save()
        publish_version(version)
    flush_search_index.fn()
    assert names(client, "/api/v1/search?baseModels=Flux.1 D")[0] == ["Mountain Landscape"]


def test_common_words_rank_their_newest_matches_but_filters_and_sorts_see_every_match(client, alice, monkeypatch):
    from models_db.search import engine
    monkeypatch.setattr(engine, "TIER", 4)  # the tier of a 100k catalog, on 10 documents
    oldest = catalog_model(alice[0], "Castle Ruins", model_type="LORA", downloads=900, tags=["castle"])
    for n in range(9):
        catalog_model(alice[0], f"Castle Keep {n}", tags=["castle"], downloads=n)
    catalog_model(alice[0], "Castle", tags=["castle"], downloads=3)  # the best name match, and new
    flush_search_index.fn()
    found, _ = names(client, "/api/v1/search?q=castle&mode=keyword&limit=3")
    assert found[0] == "Castle" and "Castle Ruins" not in found  # ranked within the newest four
    assert names(client, "/api/v1/search?q=castle&mode=keyword&types=LORA")[0] == ["Castle Ruins"]
    found, _ = names(client, "/api/v1/search?q=castle&mode=keyword&sort=Most+Downloaded&limit=2")
    assert found == ["Castle Ruins", "Castle Keep 8"]
    assert oldest.id < Model.select().order_by(Model.id.desc()).first().id


def test_a_whole_word_is_matched_before_it_is_read_as_a_prefix(client, alice):
    for name in ("Cat Portrait", "Cat Sketch", "Catgirl"):  # "Catgirl", shortest, ranks first as a prefix match
        catalog_model(alice[0], name, tags=["animal"])
    flush_search_index.fn()
    found, _ = names(client, "/api/v1/search?q=cat&mode=keyword&limit=2")
    assert sorted(found) == ["Cat Portrait", "Cat Sketch"]  # a page of whole-word matches: no prefix read
    found, _ = names(client, "/api/v1/search?q=cat&mode=keyword&limit=5")
    assert "Catgirl" in found  # too few whole-word matches for the page: the prefix fills it
    assert names(client, "/api/v1/search?q=catgi&mode=keyword")[0] == ["Catgirl"]


def test_typo_correction_looks_among_terms_with_the_same_first_letter(client, catalog):
    assert names(client, "/api/v1/search?q=lanscape&mode=keyword")[0][0] == "Mountain Landscape"
    found, body = names(client, "/api/v1/search?q=kandscape&mode=keyword")
    assert found == [] and body["query"]["corrected"] is None


# ---- finding what people mean (issue 21) -------------------------------------------------------------

def test_a_singular_word_finds_its_plural_and_exact_forms_rank_first(client, alice):
    catalog_model(alice[0], "Cozy Cabin", tags=["interior"], description="Warm wooden rooms with fireplaces")
    catalog_model(alice[0], "Hearth Study", tags=["interior"], description="A stone fireplace in a quiet room")
    flush_search_index.fn()
    assert names(client, "/api/v1/search?q=fireplace room&mode=keyword")[0] == ["Hearth Study", "Cozy Cabin"]
    assert names(client, "/api/v1/search?q=fireplaces&mode=keyword")[0] == ["Cozy Cabin", "Hearth Study"]


def test_words_no_document_has_are_dropped_from_the_end_then_any_word_is_enough(client, alice):
    catalog_model(alice[0], "Cozy Cabin", tags=["interior"], description="Warm wooden rooms with fireplaces")
    catalog_model(alice[0], "Mountain Landscape", tags=["landscape"], description="Peaks at dawn")
    catalog_model(alice[0], "Sunset Harbor", tags=["boats"], description="Fishing boats in the evening light")
    flush_search_index.fn()
    assert names(client, "/api/v1/search?q=fireplace living room&mode=keyword")[0] == ["Cozy Cabin"]
    assert names(client, "/api/v1/search?q=mountain sunset&mode=keyword")[0] == ["Mountain Landscape", "Sunset Harbor"]
    assert names(client, "/api/v1/search?q=sunset mountain&mode=keyword")[0] == ["Sunset Harbor", "Mountain Landscape"]


def test_a_paraphrase_sharing_no_word_finds_the_related_model(client, alice):
    catalog_model(alice[0], "Coral Reef", tags=["underwater", "reef"],
                  description="Colorful coral gardens with tropical fish and turtles below the waves")
    catalog_model(alice[0], "Neon Alley", tags=["cyberpunk"], description="A cyberpunk street in the rain")
    catalog_model(alice[0], "Citrus Still Life", tags=["food"], description="A bowl of lemons on a wooden table")
    flush_search_index.fn()
    assert names(client, "/api/v1/search?q=scuba diving&mode=keyword")[0] == []
    assert names(client, "/api/v1/search?q=scuba diving")[0] == ["Coral Reef"]  # MiniLM cosine 0.36
    assert names(client, "/api/v1/search?q=ocean animals")[0] == ["Coral Reef"]  # 0.49


def test_trigger_words_file_and_version_names_are_searchable(client, alice):
    catalog_model(alice[0], "Ink Wash", trained_words=["inkwsh style", "sumi"],
                  file_name="brushwork_xl-000012.safetensors")
    catalog_model(alice[0], "Inkwsh Lookalike", description="not the one")
    flush_search_index.fn()
    assert names(client, "/api/v1/search?q=inkwsh&mode=keyword")[0] == ["Inkwsh Lookalike", "Ink Wash"]
    assert names(client, "/api/v1/search?q=sumi&mode=keyword")[0] == ["Ink Wash"]
    assert names(client, "/api/v1/search?q=brushwork xl&mode=keyword")[0] == ["Ink Wash"]
    assert names(client, "/api/v1/search?q=safetensors&mode=keyword")[0] == []  # the extension is not a word


def test_synonyms_edited_from_the_cli_apply_at_the_next_query(client, alice):
    catalog_model(alice[0], "Manga Lineart", tags=["comic"])
    flush_search_index.fn()
    assert names(client, "/api/v1/search?q=anime&mode=keyword")[0] == []
    result = cli("search", "synonyms", "add", "anime", "manga")
    assert result.exit_code == 0, result.output
    assert names(client, "/api/v1/search?q=anime&mode=keyword")[0] == ["Manga Lineart"]
    assert "anime, manga" in cli("search", "synonyms", "list").output
    assert cli("search", "synonyms", "remove", "anime").exit_code == 0
    assert names(client, "/api/v1/search?q=anime&mode=keyword")[0] == []
    assert cli("search", "synonyms", "add", "anime").exit_code != 0  # a group of one


def test_the_shipped_synonyms(client, alice):
    from models_db.search import synonyms
    synonyms.install_defaults()
    catalog_model(alice[0], "Enlarge 4x", model_type="Upscaler")
    flush_search_index.fn()
    assert names(client, "/api/v1/search?q=upscaler&mode=keyword")[0] == ["Enlarge 4x"]


def test_a_typo_of_a_model_indexed_a_second_ago_is_corrected(client, catalog, alice):
    assert names(client, "/api/v1/search?q=glaicer&mode=keyword")[0] == []  # this process reads its vocabulary
    catalog_model(alice[0], "Glacier Study", tags=["ice"])
    flush_search_index.fn()
    found, body = names(client, "/api/v1/search?q=glaicer&mode=keyword")
    assert found == ["Glacier Study"] and body["query"]["corrected"] == "glacier"


def test_the_page_says_it_corrected_the_query_and_offers_the_words_as_typed(client, catalog):
    page = client.get("/?query=lanscape").get_data(as_text=True)
    assert "Showing results for" in page and "Mountain Landscape" in page
    assert "search instead for" in page and 'href="/?query=lanscape&amp;exact=1"' in page
    page = client.get("/?query=lanscape&exact=1").get_data(as_text=True)
    assert "Showing results for" not in page and "Mountain Landscape" not in page


def test_a_suggestion_opens_its_model(client, catalog):
    body = client.get("/api/v1/search/suggest?q=mou").get_json()
    assert body["models"] == [{"id": catalog["landscape"].id, "name": "Mountain Landscape",
                               "url": f"/models/{catalog['landscape'].id}"}]
    page = client.get(body["models"][0]["url"], follow_redirects=True)
    assert page.status_code == 200 and "Mountain Landscape" in page.get_data(as_text=True)


def test_postgres_reads_the_newest_matches_from_rum_indexes_where_installed(client, catalog):
    from models_db.db import db
    if search.get_backend().name != "postgres":
        pytest.skip("PostgreSQL's full-text indexes")
    if not db.execute_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'rum'").fetchone():
        pytest.skip("the rum extension is not installed (make install-test installs postgresql-15-rum as root)")
    indexes = {n for (n,) in db.execute_sql("SELECT indexname FROM pg_indexes WHERE tablename = 'search_doc'")}
    assert {"search_doc_tsv_rum", "search_doc_tsv_stem_rum", "search_doc_tsv_primary_rum"} <= indexes
    assert not {"search_doc_tsv", "search_doc_tsv_stem", "search_doc_tsv_primary"} & indexes  # GIN dropped
    backend = search.get_backend()
    sql, params = backend._newest(backend._match_text([("landscape",)], "primary", False), "primary").limit(5).sql()
    db.execute_sql("SET enable_seqscan = off")  # a tiny table: the planner would rather read it all
    plan = "\n".join(r[0] for r in db.execute_sql("EXPLAIN " + sql, params))
    db.execute_sql("RESET enable_seqscan")
    assert "search_doc_tsv_primary_rum" in plan and "Sort" not in plan  # ordered by the index
    assert names(client, "/api/v1/search?q=landscape&mode=keyword")[0] == ["Mountain Landscape"]
