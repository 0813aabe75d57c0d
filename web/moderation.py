"""Moderation: the review queue and decisions (moderators), the community rating game (signed-in
users), and each user's browsing level."""
from __future__ import annotations

from flask import Blueprint, jsonify

from models_db import images as im
from models_db.accounts import User
from models_db.db import transaction
from web.api import current_api_user, error, integer, parsed, require_user
from web.bodies import BrowsingSetting, Decision, Vote
from web.images import image_url, level_name
from web.openapi import BOOL, INT, LIMIT, NUM, STR, URL, array, doc, items_of, nullable, obj, ref

bp = Blueprint("moderation", __name__)


def require_staff():
    if not current_api_user().is_staff:
        error(403, "moderators only")


def queue_item(image: im.Image) -> dict:
    return {"id": image.id, "url": image_url(image, 450), "nsfwLevel": image.nsfw_level,
            "nsfwLevelName": level_name(image.nsfw_level), "source": image.nsfw_source,
            "proposedLevel": image.proposed_level,  # a lowering the rating game asks a moderator to confirm
            "reports": [r.reason for r in image.reports.where(im.Report.resolved == False)],  # noqa: E712
            "votes": {str(v.level): v.weight for v in image.votes}}


def level_bit(value: str | int) -> int:
    return im.LEVELS[value] if isinstance(value, str) else value


@bp.get("/api/v1/moderation/queue")
@require_user("read")
@doc("Images waiting for review (moderators)", "moderation", response=items_of(ref("ModerationItem")),
     params=[LIMIT(200)], errors={403: "moderators only"})
def review_queue():
    require_staff()
    limit = integer("limit", 50, 1, 200)
    return jsonify(items=[queue_item(i) for i in im.review_queue(limit)])


@bp.post("/api/v1/moderation/images/<id:image_id>")
@require_user("write")
@doc("Decide on an image: approve, set-level, remove, block (moderators)", "moderation",
     response=ref("ModerationItem"), body=Decision)
def decide(image_id: int):
    require_staff()
    data = parsed(Decision)
    action = data.action
    if action == "set-level" and data.level is None:
        error(400, "level is required for set-level", field="level")
    level = level_bit(data.level) if action == "set-level" else None
    image = im.Image.get_or_none(im.Image.id == image_id)
    if image is None or image.status not in ("Ready", "Removed"):
        error(404, f"No image with id {image_id}")
    with transaction():
        im.moderate(image, action, level)
    return jsonify(queue_item(im.Image.get_by_id(image_id)) | {"status": im.Image.get_by_id(image_id).status})


@bp.get("/api/v1/rating-game/next")
@require_user("read")
@doc("The next image for you to rate", "moderation",
     response=obj(("item",), item={"type": ["object", "null"], "properties": {
         "id": INT, "url": URL, "levels": array(STR)}}))
def next_to_rate():
    image = im.game_queue(current_api_user()).first()
    if image is None:
        return jsonify(item=None)
    return jsonify(item={"id": image.id, "url": image_url(image, 450), "levels": list(im.LEVELS)[:5]})


@bp.post("/api/v1/rating-game/<id:image_id>")
@require_user("write")
@doc("Vote a level; weighted votes settle it", "moderation", response=obj(settled=BOOL, nsfwLevel=INT), body=Vote,
     errors={403: "your own image, or Blocked (moderators only)"})
def rate(image_id: int):
    level = level_bit(parsed(Vote).level)
    if level == im.BLOCKED:
        error(403, "only moderators block images; report it (or vote XXX) instead")
    image = im.Image.get_or_none(im.Image.id == image_id)
    if image is None or not image.needs_review or image.status != "Ready" or image.proposed_level is not None \
            or image.private:
        error(404, f"Image {image_id} is not waiting for ratings")
    user = current_api_user()
    if image.user_id == user.id:
        error(403, "you cannot rate your own image")
    if im.Report.select().where(im.Report.image == image, im.Report.user == user).exists():
        error(403, "you reported this image: the other raters and the moderators decide it")
    with transaction():
        settled = im.vote(image, user, level)
    image = im.Image.get_by_id(image_id)
    return jsonify(settled=settled, nsfwLevel=image.nsfw_level, proposedLevel=image.proposed_level)


@bp.get("/api/v1/rating-game/leaderboard")
@doc("Raters by weight", "moderation", response=items_of(obj(
    position=INT, username=STR, weight=NUM, votes=INT, agreed=INT, disagreed=INT)))
def rater_leaderboard():
    rows = (im.Rater.select(im.Rater, User.username).join(User).where(im.Rater.votes > 0)
            .order_by(im.Rater.weight.desc(), im.Rater.agreed.desc(), User.username).limit(100).dicts())
    return jsonify(items=[{"position": n + 1, "username": r["username"], "weight": round(r["weight"], 3),
                           "votes": r["votes"], "agreed": r["agreed"], "disagreed": r["disagreed"]}
                          for n, r in enumerate(rows)])


@bp.put("/api/v1/me/settings")
@require_user("write")
@doc("Your settings: browsing level, and whether new generation outputs are posted when their run ends",
     "accounts", response=obj(browsingLevel=nullable(STR), browsingMask=INT, postOutputs=BOOL), body=BrowsingSetting)
def settings_():
    data = parsed(BrowsingSetting)
    changes = {}
    if data.browsingLevel is not None:
        changes[User.browsing_level] = im.BROWSING[data.browsingLevel]
    if data.postOutputs is not None:
        changes[User.post_outputs] = data.postOutputs
    if changes:
        User.update(changes).where(User.id == current_api_user().id).execute()
    user = User.get_by_id(current_api_user().id)
    level = next((name for name, mask in im.BROWSING.items() if mask == user.browsing_level), None)
    return jsonify(browsingLevel=level, browsingMask=user.browsing_level, postOutputs=user.post_outputs)
