"""GET /api/v1/openapi.json: an OpenAPI 3 description of every API endpoint."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from models_db import catalog as c

bp = Blueprint("openapi", __name__)


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def param(name, where="query", schema=None, description="", required=False, many=False) -> dict:
    schema = schema or {"type": "string"}
    if many:
        schema = {"type": "array", "items": schema}
    out = {"name": name, "in": where, "schema": schema, "required": required or where == "path"}
    if many:
        out.update(style="form", explode=True)
    if description:
        out["description"] = description
    return out


def json_body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def answer(description: str, schema: dict | None = None, extra: dict | None = None) -> dict:
    out: dict = {"200": {"description": description}}
    if schema is not None:
        out["200"]["content"] = {"application/json": {"schema": schema}}
    for code, text in (extra or {}).items():
        out[str(code)] = {"description": text, "content": {"application/json": {"schema": ref("Error")}}}
    return out


def op(summary: str, responses: dict, params=(), body=None, auth=None, tag="catalog") -> dict:
    out = {"summary": summary, "tags": [tag], "parameters": list(params), "responses": responses}
    if body:
        out["requestBody"] = body
    if auth:
        out["security"] = [{"bearer": []}, {"token": []}]
        out["description"] = f"Needs an API key with the `{auth}` scope."
    return out


INT = {"type": "integer"}
BOOL = {"type": "boolean"}
ENUM = lambda values: {"type": "string", "enum": list(values)}  # noqa: E731
PAGED = lambda item: {"type": "object", "properties": {  # noqa: E731
    "items": {"type": "array", "items": item}, "metadata": ref("PageMetadata")}}
MODEL_ID = param("model_id", "path", INT)
VERSION_ID = param("version_id", "path", INT)
UPLOAD_ID = param("upload_id", "path")
RUN_ID = param("run_id", "path", INT)
REF = {"oneOf": [{"type": "integer"}, {"type": "string"}],
       "description": "catalog version id, AIR (urn:air:…) or file hash (AutoV2/SHA256)"}

SCHEMAS = {
    "GenerationRequest": {"type": "object", "required": ["model"], "additionalProperties": False, "properties": {
        "model": REF, "prompt": {"type": "string"}, "prompts": {"type": "array", "items": {"type": "string"}},
        "negative_prompt": {"type": "string"}, "style": {"type": "string"},
        "width": {"type": "integer", "minimum": 64, "maximum": 4096},
        "height": {"type": "integer", "minimum": 64, "maximum": 4096},
        "steps": {"type": "integer", "minimum": 1, "maximum": 150}, "cfg_scale": {"type": "number"},
        "sampler": {"type": "string", "description": "an A1111 sampler name (GET /sdapi/v1/samplers)"},
        "seed": {"type": "integer", "minimum": -1}, "quantity": {"type": "integer", "minimum": 1, "maximum": 1000},
        "clip_skip": {"type": "integer", "minimum": 1, "maximum": 12},
        "resources": {"type": "array", "items": {"type": "object", "required": ["id"], "properties": {
            "id": REF, "weight": {"type": "number"}}}},
        "vae": REF, "init_image": {"type": "string", "format": "byte"}, "mask": {"type": "string", "format": "byte"},
        "denoising_strength": {"type": "number", "minimum": 0, "maximum": 1},
        "hires": {"type": "object", "properties": {"scale": {"type": "number"}, "steps": {"type": "integer"},
                                                   "denoising_strength": {"type": "number"}}},
        "controlnet": {"type": "object", "required": ["model", "image"], "properties": {
            "model": REF, "image": {"type": "string", "format": "byte"}, "scale": {"type": "number"}}},
        "combinatorial": {"type": "boolean"}, "wildcards": {"type": "array", "items": REF},
        "grid": {"type": "object", "required": ["x"], "properties": {axis: {"type": "object", "properties": {
            "field": {"type": "string"}, "values": {"oneOf": [{"type": "array", "items": {}}, {"type": "string"}]}}}
            for axis in ("x", "y", "z")}}}},
    "GenerationRun": {"type": "object", "properties": {
        "id": {"type": "integer"},
        "status": {"type": "string", "enum": ["Queued", "Running", "Done", "Failed", "Cancelled"]},
        "total": {"type": "integer"}, "done": {"type": "integer"}, "failed": {"type": "integer"},
        "progress": {"type": "number"}, "eventsUrl": {"type": "string"},
        "grids": {"type": "array", "items": {"type": "string"}},
        "jobs": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "index": {"type": "integer"}, "state": {"type": "string"},
            "prompt": {"type": "string"}, "seed": {"type": "integer"}, "imageUrl": {"type": "string", "nullable": True},
            "error": {"type": "string", "nullable": True}}}}}},
    "Review": {"type": "object", "properties": {
        "id": INT, "modelId": INT, "modelVersionId": INT, "username": {"type": "string"}, "recommended": BOOL,
        "rating": INT, "details": {"type": "string"}, "createdAt": {"type": "string", "format": "date-time"},
        "updatedAt": {"type": "string", "format": "date-time"}}},
    "Comment": {"type": "object", "properties": {
        "id": INT, "modelId": INT, "username": {"type": "string"}, "content": {"type": "string"},
        "createdAt": {"type": "string", "format": "date-time"}}},
    "Error": {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string"}, "message": {"type": "string"}}},
    "PageMetadata": {"type": "object", "properties": {
        "totalItems": INT, "currentPage": INT, "pageSize": INT, "totalPages": INT,
        "nextPage": {"type": "string", "format": "uri"}, "prevPage": {"type": "string", "format": "uri"},
        "nextCursor": {"type": "string"}}},
    "File": {"type": "object", "properties": {
        "id": INT, "sizeKB": {"type": "number"}, "name": {"type": "string"}, "type": ENUM(c.FILE_TYPES),
        "pickleScanResult": ENUM(c.SCAN_RESULTS), "pickleScanMessage": {"type": "string", "nullable": True},
        "virusScanResult": ENUM(c.SCAN_RESULTS), "virusScanMessage": {"type": "string", "nullable": True},
        "scannedAt": {"type": "string", "format": "date-time", "nullable": True},
        "metadata": {"type": "object", "properties": {"format": ENUM(c.FILE_FORMATS), "size": ENUM(c.FILE_SIZES),
                                                      "fp": {"type": "string", "nullable": True}}},
        "hashes": {"type": "object", "properties": {t: {"type": "string"} for t in c.HASH_TYPES}},
        "downloadUrl": {"type": "string", "format": "uri"}, "primary": BOOL}},
    "ModelVersion": {"type": "object", "properties": {
        "id": INT, "modelId": INT, "index": INT, "name": {"type": "string"},
        "description": {"type": "string", "nullable": True},
        "baseModel": ENUM(c.BASE_MODELS), "baseModelType": {"type": "string"},
        "createdAt": {"type": "string", "format": "date-time"}, "updatedAt": {"type": "string", "format": "date-time"},
        "publishedAt": {"type": "string", "format": "date-time", "nullable": True}, "status": ENUM(c.MODEL_STATUSES),
        "availability": {"type": "string"}, "nsfwLevel": INT,
        "trainedWords": {"type": "array", "items": {"type": "string"}},
        "earlyAccessTimeFrame": INT, "uploadType": {"type": "string"}, "air": {"type": "string"},
        "stats": {"type": "object", "additionalProperties": {"type": "number"}},
        "model": {"type": "object", "properties": {"name": {"type": "string"}, "type": ENUM(c.MODEL_TYPES),
                                                   "nsfw": BOOL, "poi": BOOL}},
        "files": {"type": "array", "items": ref("File")}, "images": {"type": "array", "items": {"type": "object"}},
        "downloadUrl": {"type": "string", "format": "uri"}}},
    "Model": {"type": "object", "properties": {
        "id": INT, "name": {"type": "string"}, "description": {"type": "string"}, "type": ENUM(c.MODEL_TYPES),
        "poi": BOOL, "nsfw": BOOL, "nsfwLevel": INT, "allowNoCredit": BOOL,
        "allowCommercialUse": {"type": "array", "items": ENUM(c.COMMERCIAL_USES)}, "allowDerivatives": BOOL,
        "allowDifferentLicense": BOOL, "minor": BOOL, "availability": {"type": "string"},
        "status": ENUM(c.MODEL_STATUSES),
        "stats": {"type": "object", "additionalProperties": {"type": "number"}},
        "creator": {"type": "object", "properties": {"username": {"type": "string"},
                                                     "image": {"type": "string", "nullable": True}}},
        "tags": {"type": "array", "items": {"type": "string"}},
        "modelVersions": {"type": "array", "items": ref("ModelVersion")}}},
    "NewModel": {"type": "object", "required": ["name", "type"], "properties": {
        "name": {"type": "string"}, "type": ENUM(c.MODEL_TYPES), "description": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}}, "nsfw": BOOL, "poi": BOOL, "allowNoCredit": BOOL,
        "allowDerivatives": BOOL, "allowDifferentLicense": BOOL,
        "allowCommercialUse": {"type": "array", "items": ENUM(c.COMMERCIAL_USES)}}},
    "NewVersion": {"type": "object", "required": ["modelId", "name", "baseModel"], "properties": {
        "modelId": INT, "name": {"type": "string"}, "baseModel": ENUM(c.BASE_MODELS),
        "description": {"type": "string"}, "trainedWords": {"type": "array", "items": {"type": "string"}},
        "loginRequired": BOOL}},
    "Upload": {"type": "object", "properties": {
        "id": {"type": "string"}, "modelVersionId": INT, "filename": {"type": "string"}, "type": ENUM(c.FILE_TYPES),
        "size": INT, "offset": INT, "processed": INT, "state": ENUM(("uploading", "processing", "done", "rejected")),
        "error": {"type": "string", "nullable": True}, "fileId": {"type": "integer", "nullable": True},
        "chunkSize": INT, "uploadUrl": {"type": "string", "format": "uri"}}},
    "Image": {"type": "object", "properties": {
        "id": INT, "url": {"type": "string", "format": "uri"}, "hash": {"type": "string"}, "width": INT,
        "height": INT, "nsfwLevel": ENUM(("None", "Soft", "Mature", "X")), "nsfw": BOOL, "browsingLevel": INT,
        "createdAt": {"type": "string", "format": "date-time"}, "postId": {"type": "integer", "nullable": True},
        "stats": {"type": "object", "additionalProperties": INT},
        "meta": {"type": "object", "nullable": True}, "username": {"type": "string"},
        "baseModel": {"type": "string", "nullable": True}, "modelVersionIds": {"type": "array", "items": INT}}},
    "Health": {"type": "object", "properties": {"status": ENUM(("ok", "unavailable")), "checks": {
        "type": "object", "additionalProperties": {"type": "object", "properties": {
            "ok": BOOL, "detail": {"type": "string"}}}}}},
}

LIST_PARAMS = [
    param("limit", schema=INT, description="1-100 (default 100)"), param("page", schema=INT),
    param("cursor", description="opaque; from metadata.nextCursor"), param("query"), param("tag"),
    param("username"), param("types", schema=ENUM(c.MODEL_TYPES), many=True),
    param("sort", schema=ENUM(("Highest Rated", "Most Downloaded", "Newest"))),
    param("period", schema=ENUM(("AllTime", "Year", "Month", "Week", "Day"))),
    param("rating", schema={"type": "number"}),
    param("primaryFileOnly", schema=BOOL), param("allowNoCredit", schema=BOOL), param("allowDerivatives", schema=BOOL),
    param("allowDifferentLicenses", schema=BOOL), param("allowCommercialUse", schema=ENUM(c.COMMERCIAL_USES)),
    param("nsfw", schema=BOOL), param("baseModels", schema=ENUM(c.BASE_MODELS), many=True),
    param("ids", schema=INT, many=True),
]
SIMPLE_PAGE = [param("limit", schema=INT), param("page", schema=INT), param("query")]
NOT_FOUND = {404: "not found"}
WRITE_ERRORS = {400: "invalid input", 401: "no API key", 403: "key lacks the write scope", 404: "not found"}

PATHS = {
    "/api/v1/models": {
        "get": op("List published models", answer("A page of models", PAGED(ref("Model")), {400: "bad parameter"}),
                  LIST_PARAMS),
        "post": op("Create a model (Draft)", {"201": {"description": "created", "content": {
            "application/json": {"schema": ref("Model")}}}, **answer("", None, WRITE_ERRORS)},
            body=json_body(ref("NewModel")), auth="write", tag="creators")},
    "/api/v1/models/{model_id}": {"get": op("One model", answer("The model", ref("Model"), NOT_FOUND), [MODEL_ID])},
    "/api/v1/models/{model_id}/publish": {"post": op(
        "Publish every version that has an accepted file", answer("The model", ref("Model"),
                                                                  {**WRITE_ERRORS, 409: "nothing to publish"}),
        [MODEL_ID], auth="write", tag="creators")},
    "/api/v1/model-versions": {"post": op("Create a version of one of your models", {
        "201": {"description": "created", "content": {"application/json": {"schema": ref("ModelVersion")}}},
        **answer("", None, WRITE_ERRORS)}, body=json_body(ref("NewVersion")), auth="write", tag="creators")},
    "/api/v1/model-versions/{version_id}": {"get": op(
        "One model version", answer("The version", ref("ModelVersion"), NOT_FOUND), [VERSION_ID])},
    "/api/v1/model-versions/{version_id}/publish": {"post": op(
        "Publish a version", answer("The version", ref("ModelVersion"), {**WRITE_ERRORS, 409: "no accepted file"}),
        [VERSION_ID], auth="write", tag="creators")},
    "/api/v1/model-versions/{version_id}/files": {"post": op(
        "Upload a file in one multipart request", {"202": {"description": "received; ingest queued", "content": {
            "application/json": {"schema": ref("Upload")}}}, **answer("", None, {**WRITE_ERRORS, 413: "too large"})},
        [VERSION_ID], body={"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"}, "type": ENUM(c.FILE_TYPES)}}}}},
        auth="write", tag="creators")},
    "/api/v1/model-versions/by-hash/{file_hash}": {"get": op(
        "The version holding a file with this SHA256, AutoV1, AutoV2, CRC32 or BLAKE3 (any case)",
        answer("The version", ref("ModelVersion"), NOT_FOUND), [param("file_hash", "path")])},
    "/api/v1/model-versions/by-hash": {"post": op(
        "Versions for up to 100 hashes", answer("Versions found", {"type": "array", "items": ref("ModelVersion")},
                                                {400: "not a list of at most 100 hashes"}),
        body=json_body({"type": "array", "items": {"type": "string"}, "maxItems": 100}))},
    "/api/v1/uploads": {"post": op("Start a resumable upload", {"201": {"description": "started", "content": {
        "application/json": {"schema": ref("Upload")}}}, **answer("", None, {**WRITE_ERRORS, 413: "too large"})},
        body=json_body({"type": "object", "required": ["modelVersionId", "filename", "size"], "properties": {
            "modelVersionId": INT, "filename": {"type": "string"}, "size": INT, "type": ENUM(c.FILE_TYPES)}}),
        auth="write", tag="creators")},
    "/api/v1/uploads/{upload_id}": {
        "get": op("State of an upload (offset to resume from, ingest progress, outcome)",
                  answer("The upload", ref("Upload"), NOT_FOUND), [UPLOAD_ID], auth="read", tag="creators"),
        "put": op("Send the next chunk: header Content-Range: bytes START-END/TOTAL; START must equal offset",
                  answer("The upload", ref("Upload"), {**WRITE_ERRORS, 409: "wrong offset (body has it)"}),
                  [UPLOAD_ID, param("Content-Range", "header", required=True)],
                  body={"required": True, "content": {"application/octet-stream": {"schema": {
                      "type": "string", "format": "binary"}}}}, auth="write", tag="creators"),
        "delete": op("Cancel an unfinished upload", {"204": {"description": "cancelled"},
                                                     **answer("", None, WRITE_ERRORS)},
                     [UPLOAD_ID], auth="write", tag="creators")},
    "/api/v1/tags": {"get": op(
        "Tags with model counts", answer("A page of tags", PAGED({"type": "object"})), SIMPLE_PAGE)},
    "/api/v1/creators": {"get": op(
        "Creators with model counts", answer("A page of creators", PAGED({"type": "object"})), SIMPLE_PAGE)},
    "/api/v1/enums": {"get": op("Enumerations", answer("Lists of values", {"type": "object"}))},
    "/api/v1/me": {"get": op("The user of the API key", answer("The user", {"type": "object", "properties": {
        "id": INT, "username": {"type": "string"}, "tier": {"type": "string"}, "status": {"type": "string"}}},
        {401: "no or bad key"}), auth="read", tag="accounts")},
    "/api/v1/notifications": {"get": op("Messages to the user of the API key, newest first", answer(
        "Notifications", {"type": "object", "properties": {"items": {"type": "array", "items": {
            "type": "object", "properties": {"id": INT, "kind": {"type": "string"}, "message": {"type": "string"},
                                             "createdAt": {"type": "string", "format": "date-time"}}}}}},
        {401: "no or bad key"}), [param("limit", schema=INT)], auth="read", tag="accounts")},
    "/api/v1/leaderboards/{board}": {"get": op("Top creators by downloads in a period", answer(
        "The board", {"type": "object", "properties": {"board": {"type": "string"}, "updatedAt": {
            "type": "string", "nullable": True}, "items": {"type": "array", "items": {"type": "object", "properties": {
                "position": INT, "username": {"type": "string"}, "score": {"type": "number"},
                "link": {"type": "string"}}}}}}, NOT_FOUND),
        [param("board", "path", ENUM(("creators-day", "creators-week", "creators-month", "creators-year",
                                      "creators-alltime")))])},
    "/api/v1/search": {"get": op(
        "Search models: keyword (typo tolerant) fused with semantic similarity, with facets and highlights",
        answer("Hits", {"type": "object", "properties": {
            "items": {"type": "array", "items": ref("Model")},
            "hits": {"type": "array", "items": {"type": "object", "properties": {
                "id": INT, "score": {"type": "number"}, "highlights": {"type": "object"}}}},
            "facets": {"type": "object", "additionalProperties": {"type": "object",
                                                                  "additionalProperties": INT}},
            "query": {"type": "object", "properties": {"text": {"type": "string"},
                                                       "corrected": {"type": "string", "nullable": True}}},
            "metadata": ref("PageMetadata")}}, {400: "bad parameter"}),
        [param("q"), param("mode", schema=ENUM(("hybrid", "keyword"))),
         param("sort", schema=ENUM(("Relevance", "Highest Rated", "Most Downloaded", "Newest"))),
         param("types", schema=ENUM(c.MODEL_TYPES), many=True), param("baseModels", many=True),
         param("tags", many=True), param("username"), param("nsfw", schema=BOOL), param("limit", schema=INT),
         param("cursor")], tag="search")},
    "/api/v1/search/suggest": {"get": op(
        "Model names completing a prefix", answer("Suggestions", {
            "type": "object", "properties": {"query": {"type": "string"},
                                             "suggestions": {"type": "array", "items": {"type": "string"}}}}),
        [param("q", required=True), param("limit", schema=INT)], tag="search")},
    "/api/v1/images": {
        "get": op("Images, as Civitai's images API", answer("A page of images", PAGED(ref("Image")),
                                                            {400: "bad parameter"}),
                  [param("limit", schema=INT), param("cursor"), param("page", schema=INT), param("postId", schema=INT),
                   param("modelId", schema=INT), param("modelVersionId", schema=INT), param("username"),
                   param("nsfw", description="None|Soft|Mature|X or true/false"),
                   param("sort", schema=ENUM(("Most Reactions", "Most Comments", "Newest"))),
                   param("period", schema=ENUM(("AllTime", "Year", "Month", "Week", "Day"))),
                   param("withMeta", schema=BOOL)], tag="images"),
        "post": op("Upload an image (processed and NSFW-scored by workers)", {
            "202": {"description": "queued", "content": {"application/json": {"schema": {"type": "object"}}}},
            **answer("", None, {**WRITE_ERRORS, 413: "too large"})},
            body={"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"], "properties": {
                    "file": {"type": "string", "format": "binary"}, "postId": INT, "modelVersionId": INT}}}}},
            auth="write", tag="images")},
    "/api/v1/images/{image_id}": {"get": op("One image (owners also see Pending/Rejected with the reason)",
                                            answer("The image", ref("Image"), NOT_FOUND),
                                            [param("image_id", "path", INT)], tag="images")},
    "/api/v1/images/{image_id}/reactions/{kind}": {
        method: op(f"{verb} a reaction (one per user and kind)", answer("Reaction counts", {"type": "object"},
                                                                        {**WRITE_ERRORS}),
                   [param("image_id", "path", INT), param("kind", "path", ENUM(("Like", "Heart", "Laugh", "Cry",
                                                                                "Dislike")))],
                   auth="write", tag="images") for method, verb in (("put", "Add"), ("delete", "Remove"))},
    "/api/v1/images/{image_id}/report": {"post": op(
        "Report an image to the moderators", {"202": {"description": "reported"}, **answer("", None, WRITE_ERRORS)},
        [param("image_id", "path", INT)], body=json_body({"type": "object", "required": ["reason"], "properties": {
            "reason": {"type": "string"}}}), auth="write", tag="images")},
    "/api/v1/posts": {"post": op("Create a post (a group of images, optionally on a model version)", {
        "201": {"description": "created"}, **answer("", None, WRITE_ERRORS)},
        body=json_body({"type": "object", "properties": {"title": {"type": "string"}, "modelVersionId": INT}}),
        auth="write", tag="images")},
    "/api/v1/model-versions/{version_id}/review": {
        "put": op("Review a published version: thumbs up or down, an optional 1-5 rating (default 5 up, 1 down) "
                  "and text; one per user and version, replaced on the next call",
                  answer("The review", ref("Review"), WRITE_ERRORS), [VERSION_ID], body=json_body({
                      "type": "object", "required": ["recommended"], "properties": {
                          "recommended": BOOL, "rating": {"type": "integer", "minimum": 1, "maximum": 5},
                          "details": {"type": "string", "maxLength": 5000}}}), auth="write", tag="reviews"),
        "delete": op("Withdraw your review", {"204": {"description": "removed"}, **answer("", None, WRITE_ERRORS)},
                     [VERSION_ID], auth="write", tag="reviews")},
    "/api/v1/models/{model_id}/reviews": {"get": op(
        "The model's newest reviews", answer("Reviews", {"type": "object", "properties": {
            "items": {"type": "array", "items": ref("Review")}}}, NOT_FOUND),
        [MODEL_ID, param("limit", schema=INT)], tag="reviews")},
    "/api/v1/models/{model_id}/comments": {
        "get": op("The model's newest comments", answer("Comments", {"type": "object", "properties": {
            "items": {"type": "array", "items": ref("Comment")}}}, NOT_FOUND),
            [MODEL_ID, param("limit", schema=INT)], tag="reviews"),
        "post": op("Comment on a published model", {"201": {"description": "The comment", "content": {
            "application/json": {"schema": ref("Comment")}}}, **answer("", None, WRITE_ERRORS)}, [MODEL_ID],
            body=json_body({"type": "object", "required": ["content"], "properties": {
                "content": {"type": "string", "maxLength": 5000}}}), auth="write", tag="reviews")},
    "/api/v1/comments/{comment_id}": {"delete": op(
        "Remove your comment (staff: any comment)", {"204": {"description": "removed"},
                                                     **answer("", None, WRITE_ERRORS)},
        [param("comment_id", "path", INT)], auth="write", tag="reviews")},
    "/api/v1/moderation/queue": {"get": op("Images waiting for review (moderators)", answer(
        "The queue", {"type": "object"}, {401: "no key", 403: "not a moderator"}), [param("limit", schema=INT)],
        auth="read", tag="moderation")},
    "/api/v1/moderation/images/{image_id}": {"post": op(
        "Decide on an image: approve, set-level, remove, block", answer("The decision", {"type": "object"},
                                                                        {**WRITE_ERRORS}),
        [param("image_id", "path", INT)], body=json_body({"type": "object", "required": ["action"], "properties": {
            "action": ENUM(("approve", "set-level", "remove", "block")),
            "level": ENUM(("PG", "PG13", "R", "X", "XXX", "Blocked"))}}), auth="write", tag="moderation")},
    "/api/v1/rating-game/next": {"get": op("The next image for you to rate", answer("An image or null",
                                                                                    {"type": "object"}),
                                           auth="read", tag="moderation")},
    "/api/v1/rating-game/{image_id}": {"post": op(
        "Vote a level; weighted votes settle it", answer("Whether it settled", {"type": "object"}, WRITE_ERRORS),
        [param("image_id", "path", INT)], body=json_body({"type": "object", "required": ["level"], "properties": {
            "level": ENUM(("PG", "PG13", "R", "X", "XXX"))}}), auth="write", tag="moderation")},
    "/api/v1/rating-game/leaderboard": {"get": op("Raters by weight", answer("Raters", {"type": "object"}),
                                                  tag="moderation")},
    "/api/v1/me/settings": {"put": op("Set your browsing level", answer("The setting", {"type": "object"},
                                                                        WRITE_ERRORS),
                                      body=json_body({"type": "object", "properties": {
                                          "browsingLevel": ENUM(("None", "Soft", "Mature", "X"))}}),
                                      auth="write", tag="accounts")},
    "/api/v1/openapi.json": {"get": op("This document", answer("OpenAPI 3", {"type": "object"}), tag="meta")},
    "/api/download/models/{version_id}": {"get": op(
        "Download a file of a version: 307 to a signed storage URL that needs no key",
        {"307": {"description": "redirect to the file", "headers": {"Location": {"schema": {"type": "string"}}}},
         **answer("", None, {401: "login required", 403: "file failed its scan", 404: "no such version/file"})},
        [VERSION_ID, param("type", schema=ENUM(c.FILE_TYPES)), param("format", schema=ENUM(c.FILE_FORMATS)),
         param("size", schema=ENUM(c.FILE_SIZES)), param("fp", schema=ENUM(c.FILE_FPS)), param("fileId", schema=INT),
         param("token")], tag="downloads")},
    "/api/download/files/{file_id}/{filename}": {"get": op(
        "The file bytes (signed link); honours Range with 206/416",
        {"200": {"description": "the bytes", "content": {"application/octet-stream": {}}},
         "206": {"description": "a range of the bytes"}, "416": {"description": "range not satisfiable"},
         "403": {"description": "bad or expired link", "content": {"application/json": {"schema": ref("Error")}}}},
        [param("file_id", "path", INT), param("filename", "path"), param("expires", schema=INT, required=True),
         param("sig", required=True), param("Range", "header")], tag="downloads")},
    "/api/v1/generation": {"post": op(
        "Queue a generation run: one prompt × quantity, a prompts list, {a|b}/__wildcard__ templates or an XYZ grid",
        {"202": {"description": "queued", "content": {"application/json": {"schema": ref("GenerationRun")}}},
         "400": {"description": "bad request: `field` names the field", "content": {
             "application/json": {"schema": ref("Error")}}}},
        body=json_body(ref("GenerationRequest")), auth="write", tag="generation")},
    "/api/v1/generation/runs": {"get": op("Your latest runs (without their jobs)", answer(
        "runs", {"type": "object", "properties": {"items": {"type": "array", "items": ref("GenerationRun")}}}),
        [param("limit", schema=INT)], auth="read", tag="generation")},
    "/api/v1/generation/runs/{run_id}": {
        "get": op("A run: status, progress, jobs and image URLs",
                  answer("the run", ref("GenerationRun"), {404: "no such run"}),
                  [RUN_ID], auth="read", tag="generation"),
        "delete": op("Cancel: queued jobs are dropped, a running batch stops at its next step",
                     answer("the run", ref("GenerationRun"), {404: "no such run"}), [RUN_ID], auth="write",
                     tag="generation")},
    "/api/v1/generation/runs/{run_id}/events": {"get": op(
        "Server-Sent Events until the run ends: queued, started, step, image, grid, done, failed, cancelled",
        {"200": {"description": "text/event-stream; each kept event has an id for Last-Event-ID",
                 "content": {"text/event-stream": {}}}},
        [RUN_ID, param("Last-Event-ID", "header"), param("after", schema=INT)], auth="read", tag="generation")},
    "/api/v1/generation/runs/{run_id}/grid/{n}.png": {"get": op(
        "The n-th XYZ grid image of a run", {"200": {"description": "PNG", "content": {"image/png": {}}}},
        [RUN_ID, param("n", "path", INT)], auth="read", tag="generation")},
    "/api/v1/generation/jobs/{job_id}/image.png": {"get": op(
        "A job's PNG (with its A1111 parameters chunk)", {"200": {"description": "PNG", "content": {"image/png": {}}}},
        [param("job_id", "path", INT)], auth="read", tag="generation")},
    "/healthz": {"get": op("Health of database, Redis and storage",
                           {"200": {"description": "all up", "content": {
                               "application/json": {"schema": ref("Health")}}},
                            "503": {"description": "something is down", "content": {
                                "application/json": {"schema": ref("Health")}}}}, tag="meta")},
}


def document(server_url: str) -> dict:
    return {
        "openapi": "3.0.3",
        "info": {"title": "Atelier API", "version": "1", "description":
                 "Civitai-compatible REST API v1 plus creator uploads. Auth: `Authorization: Bearer <key>` "
                 "or `?token=<key>` on any path."},
        "servers": [{"url": server_url}],
        "paths": PATHS,
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "token": {"type": "apiKey", "in": "query", "name": "token"}}},
    }


@bp.get("/api/v1/openapi.json")
def openapi():
    return jsonify(document(request.host_url.rstrip("/")))
