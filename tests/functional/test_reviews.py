"""Reviews and comments through the API and the model page; the all-time stats a job recomputes from them,
and the period rollups of downloads, ratings, comments and reactions that feed the API's sorts."""
import re
from datetime import timedelta

from models_db.catalog import Model, ModelVersion
from models_db.db import utcnow
from models_db.downloads import Download, record
from models_db.images import Image, Reaction
from models_db.reviews import Comment, Review
from models_db.stats import ModelStat, VersionStat, refresh_models, rollup
from tests.conftest import make_user, run_jobs
from tests.functional.test_web_pages import log_in
from tests.helpers import auth, catalog_model


def model_stats(client, model_id: int) -> tuple[dict, dict]:
    m = client.get(f"/api/v1/models/{model_id}").get_json()
    return m["stats"], m["modelVersions"][0]["stats"]


def version_of(model) -> int:
    return ModelVersion.get(ModelVersion.model == model).id


def test_reviews_and_comments_become_the_models_stats(client, worker, alice, bob):
    _, carol_key = make_user("carol")
    model = catalog_model(alice[0], "Reviewed")
    v = version_of(model)
    r = client.put(f"/api/v1/model-versions/{v}/review", headers=auth(bob[1]),
                   json={"recommended": True, "rating": 4, "details": "crisp <b>faces</b>"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["rating"] == 4 and r.get_json()["username"] == "bob"
    assert r.get_json()["createdAt"].endswith("Z")  # as every date in the API
    assert client.put(f"/api/v1/model-versions/{v}/review", headers=auth(carol_key),
                      json={"recommended": False}).status_code == 200
    r = client.post(f"/api/v1/models/{model.id}/comments", headers=auth(carol_key), json={"content": "works on 1.5"})
    assert r.status_code == 201 and r.get_json()["content"] == "works on 1.5"
    run_jobs(worker)
    stats, version_stats = model_stats(client, model.id)
    assert (stats["ratingCount"], stats["rating"], stats["thumbsUpCount"], stats["thumbsDownCount"],
            stats["commentCount"]) == (2, 2.5, 1, 1, 1)  # a plain thumbs down rates 1
    assert (version_stats["ratingCount"], version_stats["rating"], version_stats["thumbsUpCount"]) == (2, 2.5, 1)

    # a second review by the same user replaces the first; deleting takes it out of the stats
    client.put(f"/api/v1/model-versions/{v}/review", headers=auth(bob[1]), json={"recommended": True})
    assert Review.select().count() == 2
    assert client.delete(f"/api/v1/model-versions/{v}/review", headers=auth(carol_key)).status_code == 204
    assert client.delete(f"/api/v1/model-versions/{v}/review", headers=auth(carol_key)).status_code == 404
    comment_id = client.get(f"/api/v1/models/{model.id}/comments").get_json()["items"][0]["id"]
    assert client.delete(f"/api/v1/comments/{comment_id}", headers=auth(bob[1])).status_code == 404  # not his
    assert client.delete(f"/api/v1/comments/{comment_id}", headers=auth(carol_key)).status_code == 204
    run_jobs(worker)
    stats, _ = model_stats(client, model.id)
    assert (stats["ratingCount"], stats["rating"], stats["thumbsDownCount"], stats["commentCount"]) == (1, 5, 0, 0)
    listed = client.get(f"/api/v1/models/{model.id}/reviews").get_json()["items"]
    assert [(x["username"], x["recommended"], x["details"]) for x in listed] == [("bob", True, "")]
    assert client.get(f"/api/v1/models/{model.id}/comments").get_json()["items"] == []


def test_bad_reviews_and_comments_are_refused_and_nothing_is_stored(client, alice, bob):
    model = catalog_model(alice[0], "Strict")
    draft = catalog_model(alice[0], "Draft", publish=False)
    v = version_of(model)
    cases = [
        ("put", f"/api/v1/model-versions/{v}/review", {"recommended": True, "rating": 6}, 400, "rating"),
        ("put", f"/api/v1/model-versions/{v}/review", {"recommended": True, "rating": True}, 400, "rating"),
        ("put", f"/api/v1/model-versions/{v}/review", {"rating": 3}, 400, "recommended"),
        ("put", f"/api/v1/model-versions/{v}/review", {"recommended": True, "details": "x" * 5001}, 400, "details"),
        ("put", f"/api/v1/model-versions/{version_of(draft)}/review", {"recommended": True}, 404, "No model version"),
        ("post", f"/api/v1/models/{model.id}/comments", {"content": "   "}, 400, "content"),
        ("post", f"/api/v1/models/{draft.id}/comments", {"content": "hi"}, 404, "No model"),
        ("post", f"/api/v1/models/{model.id}/comments", ["not", "an object"], 400, "JSON object"),
    ]
    for method, url, data, status, word in cases:
        r = getattr(client, method)(url, headers=auth(bob[1]), json=data)
        assert r.status_code == status and word in r.get_json()["error"], (url, data, r.get_json())
    r = client.put(f"/api/v1/model-versions/{v}/review", json={"recommended": True})
    assert r.status_code == 401 and r.get_json()["error"] == "Unauthorized"
    assert Review.select().count() == 0 and Comment.select().count() == 0


def test_the_model_page_posts_a_review_and_a_comment(client, worker, alice, bob):
    model = catalog_model(alice[0], "Paged")
    v = version_of(model)
    page = f"/models/{model.id}"
    assert "review-form" not in client.get(page).get_data(as_text=True)  # anonymous: read only
    log_in(client, bob[0])
    html = client.get(page).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    r = client.post(f"{page}/review", data={"csrf_token": token, "modelVersionId": v, "recommended": "false",
                                            "rating": "2", "details": "<script>x</script> muddy"})
    assert r.status_code == 302
    client.post(f"{page}/comments", data={"csrf_token": token, "content": "needs a VAE"})
    assert client.post(f"{page}/comments", data={"content": "no token"}).status_code == 400
    for hostile in ("99999999999999999999999", "-1", "²"):  # the form's version id is parsed like any id
        r = client.post(f"{page}/review", data={"csrf_token": token, "modelVersionId": hostile, "rating": hostile,
                                                "recommended": "true"})
        assert r.status_code == 302, (hostile, r.status_code)
    run_jobs(worker)
    html = client.get(page).get_data(as_text=True)
    assert "needs a VAE" in html and "&lt;script&gt;x&lt;/script&gt; muddy" in html and "<script>x" not in html
    assert "Comments (1)" in html
    stats, _ = model_stats(client, model.id)
    assert (stats["ratingCount"], stats["rating"], stats["thumbsDownCount"]) == (1, 2, 1)


def test_refreshing_stats_again_changes_nothing(alice, bob):
    model = catalog_model(alice[0], "Twice")
    version = ModelVersion.get(ModelVersion.model == model)
    from models_db.reviews import review
    review(bob[0].id, version, True, None, "")
    assert refresh_models([model.id]) == 2  # the version and the model
    assert refresh_models([model.id]) == 0  # a redelivered message finds nothing to change
    assert rollup()["repaired"] == 0


def test_period_rollups_count_each_kind_of_event_and_sort_the_api(client, alice, bob):
    old = catalog_model(alice[0], "Loved last year")
    new = catalog_model(alice[0], "Loved this week")
    from models_db.images import react
    from models_db.reviews import comment, review
    days_ago = {}

    def events(model, days: int, rating: int, downloads: int):
        version = ModelVersion.get(ModelVersion.model == model)
        for i in range(downloads):
            record(f"{model.id}-{i}", version.files.get().id, None)
        review(bob[0].id, version, rating >= 3, rating, "")
        comment(bob[0].id, model.id, "nice")
        image = Image.create(user=alice[0], model_version=version, status="Ready", nsfw_level=1)
        react(image, bob[0], "Heart", True)
        days_ago[model.id] = days

    events(old, 200, 5, 4)
    events(new, 2, 3, 1)
    for table, column in ((Download, Download.created_at), (Review, Review.created_at),
                          (Comment, Comment.created_at), (Reaction, Reaction.created_at)):
        for model_id, days in days_ago.items():
            owned = {Download: Download.file.in_(
                         [f.id for f in ModelVersion.get(ModelVersion.model == model_id).files]),
                     Review: Review.model == model_id, Comment: Comment.model == model_id,
                     Reaction: Reaction.image.in_(Image.select(Image.id).join(ModelVersion)
                                                  .where(ModelVersion.model == model_id))}[table]
            table.update({column: utcnow() - timedelta(days=days)}).where(owned).execute()
    # the events above were written without their refresh jobs: the rollup repairs both models and versions
    assert rollup() == {"Day": 0, "Week": 1, "Month": 1, "Year": 2, "AllTime": 2, "repaired": 4}
    assert [(m.download_count, m.rating_count, m.rating, m.comment_count) for m in
            (Model.get_by_id(old.id), Model.get_by_id(new.id))] == [(4, 1, 5.0, 1), (1, 1, 3.0, 1)]

    def row(model, period):
        s = ModelStat.get(ModelStat.model == model.id, ModelStat.period == period)
        return (s.download_count, s.rating_count, s.rating, s.comment_count, s.reaction_count)
    assert row(new, "Week") == (1, 1, 3.0, 1, 1)
    assert row(old, "Year") == (4, 1, 5.0, 1, 1)
    assert not ModelStat.select().where(ModelStat.model == old.id, ModelStat.period == "Week").exists()
    assert VersionStat.get(VersionStat.version == version_of(old), VersionStat.period == "AllTime").reaction_count == 1

    def order(sort, period):
        return [m["name"] for m in client.get(f"/api/v1/models?sort={sort}&period={period}").get_json()["items"]]
    assert order("Highest Rated", "Week") == ["Loved this week", "Loved last year"]
    assert order("Highest Rated", "Year") == ["Loved last year", "Loved this week"]
    assert order("Most Downloaded", "Week") == ["Loved this week", "Loved last year"]
    assert order("Newest", "Week") == ["Loved this week", "Loved last year"]  # both published this week
