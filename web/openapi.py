"""GET /api/v1/openapi.json: the OpenAPI 3.1 document, built from the app itself. Paths and path parameters
come from the URL rules, auth from require_user, request bodies from the pydantic models the views validate
with (web.bodies, gpu.request), and the standard error answers from what each operation takes. Each view
says the rest with @doc: summary, query parameters, its success body (the response schemas below)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from apispec import APISpec
from flask import Blueprint, current_app, jsonify, request
from werkzeug.routing import IntegerConverter

from models_db import catalog as c
from models_db.ids import INT64_MAX

bp = Blueprint("openapi", __name__)
DOCUMENTED = ("/api/", "/healthz")


@dataclass
class Doc:
    """What the document says of a view beyond its route, auth and body model."""
    summary: str
    tag: str
    response: dict | None = None  # the success body's schema
    status: int = 200
    body: object = None  # a pydantic model, or a requestBody object for other media types
    media: str = "application/json"  # of the success body
    params: list = field(default_factory=list)  # query and header parameters
    path: dict = field(default_factory=dict)  # path parameter schemas narrower than the rule's: {name: schema}
    errors: dict = field(default_factory=dict)  # answers beyond the standard ones: {409: "why"}


def doc(summary: str, tag: str, **details):
    def decorator(view):
        view.api_doc = Doc(summary, tag, **details)
        return view
    return decorator


# ---- schema helpers --------------------------------------------------------------------------------
def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    return {**schema, "type": [schema["type"], "null"]}


def enum(values) -> dict:
    return {"type": "string", "enum": list(values)}


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


def obj(required=(), **properties) -> dict:
    out = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    return out


def paged(item: dict) -> dict:
    return obj(("items", "metadata"), items=array(item), metadata=ref("PageMetadata"))


def items_of(item: dict) -> dict:
    return obj(("items",), items=array(item))


def param(name: str, schema: dict | None = None, where="query", description="", required=False,
          many=False) -> dict:
    schema = schema or STR
    out = {"name": name, "in": where, "required": required,
           "schema": array(schema) if many else schema}
    if many:
        out.update(style="form", explode=True)
    if description:
        out["description"] = description
    return out


STR, INT, NUM, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
DATE = {"type": "string", "format": "date-time"}
URL = {"type": "string", "format": "uri"}
COUNT = {"type": "integer", "minimum": 0}
LIMIT = lambda hi: param("limit", {"type": "integer", "minimum": 1, "maximum": hi})  # noqa: E731
PAGE = param("page", {"type": "integer", "minimum": 1})
PERIOD = param("period", enum(("AllTime", "Year", "Month", "Week", "Day")))
BINARY = {"type": "string", "format": "binary"}


def multipart(required=(), **fields) -> dict:
    return {"required": True, "content": {"multipart/form-data": {"schema": obj(required, **fields)}}}


# ---- response schemas: the Civitai v1 shapes (shared/reference) and Atelier's own -----------------
STATS = {"type": "object", "additionalProperties": NUM}
SCHEMAS = {
    "Error": obj(("error",), error=STR, message=STR, field=nullable(STR), offset=INT, retryAfter=INT),
    "PageMetadata": obj(totalItems=COUNT, currentPage=INT, pageSize=INT, totalPages=INT, nextPage=URL,
                        prevPage=URL, nextCursor=STR),
    "File": obj(
        ("id", "sizeKB", "name", "type", "hashes", "downloadUrl", "primary", "metadata"),
        id=INT, sizeKB=NUM, name=STR, type=enum(c.FILE_TYPES), pickleScanResult=enum(c.SCAN_RESULTS),
        pickleScanMessage=nullable(STR), virusScanResult=enum(c.SCAN_RESULTS), virusScanMessage=nullable(STR),
        scannedAt=nullable(DATE),
        metadata=obj(format=enum(c.FILE_FORMATS), size=enum(c.FILE_SIZES), fp=nullable(STR)),
        hashes=obj(**{t: STR for t in c.HASH_TYPES}), downloadUrl=URL, primary=BOOL),
    "ShowcaseImage": obj(("id", "url", "nsfwLevel", "hash", "type", "hasMeta"), id=INT, url=URL, nsfwLevel=INT,
                         width=nullable(INT), height=nullable(INT), hash=nullable(STR), type=enum(("image", "video")),
                         hasMeta=BOOL, meta={"type": "object"}),
    "ModelVersion": obj(
        ("id", "name", "baseModel", "createdAt", "updatedAt", "publishedAt", "trainedWords", "files", "images",
         "downloadUrl", "stats"),
        id=INT, modelId=INT, index=INT, name=STR, description=nullable(STR), baseModel=enum(c.BASE_MODELS),
        baseModelType=STR, createdAt=DATE, updatedAt=DATE, publishedAt=nullable(DATE),
        status=enum(c.MODEL_STATUSES), availability=STR, nsfwLevel=INT, trainedWords=array(STR),
        earlyAccessTimeFrame=INT, uploadType=STR, air=STR, stats=STATS,
        model=obj(name=STR, type=enum(c.MODEL_TYPES), nsfw=BOOL, poi=BOOL),
        files=array(ref("File")), images=array(ref("ShowcaseImage")), downloadUrl=URL),
    "Model": obj(
        ("id", "name", "type", "creator", "tags", "stats", "modelVersions"),
        id=INT, name=STR, description=STR, type=enum(c.MODEL_TYPES), poi=BOOL, nsfw=BOOL, nsfwLevel=INT,
        allowNoCredit=BOOL, allowCommercialUse=array(enum(c.COMMERCIAL_USES)), allowDerivatives=BOOL,
        allowDifferentLicense=BOOL, minor=BOOL, availability=STR, cosmetic={"type": "null"},
        status=enum(c.MODEL_STATUSES), createdAt=DATE, publishedAt=nullable(DATE), stats=STATS,
        creator=obj(("username",), username=STR, image=nullable(STR)), tags=array(STR),
        modelVersions=array(ref("ModelVersion"))),
    "Upload": obj(
        ("id", "state", "offset", "size"),
        id=STR, modelVersionId=INT, filename=STR, type=enum(c.FILE_TYPES), size=INT, offset=INT, processed=INT,
        state=enum(("uploading", "processing", "done", "rejected")), error=nullable(STR), fileId=nullable(INT),
        chunkSize=INT, uploadUrl=URL),
    "Image": obj(
        ("id", "status"), id=INT, status=enum(("Pending", "Ready", "Rejected", "Removed")), error=nullable(STR),
        url=URL, hash=nullable(STR), width=nullable(INT), height=nullable(INT),
        nsfwLevel=enum(("None", "Soft", "Mature", "X")), nsfw=BOOL, browsingLevel=INT, createdAt=DATE,
        postId=nullable(INT), stats={"type": "object", "additionalProperties": INT},
        meta=nullable({"type": "object"}), username=STR, baseModel=nullable(STR), modelVersionIds=array(INT),
        private=BOOL),
    "Review": obj(
        ("id", "modelId", "modelVersionId", "recommended"), id=INT, modelId=INT, modelVersionId=INT, username=STR,
        recommended=BOOL, rating=INT, details=STR, createdAt=DATE, updatedAt=DATE),
    "Comment": obj(("id", "modelId", "content"), id=INT, modelId=INT, username=STR, content=STR, createdAt=DATE),
    "GenerationJob": obj(
        ("id", "index", "state"), id=INT, index=INT, state=STR, prompt=STR, negativePrompt=STR, seed=INT,
        error=nullable(STR), cell=nullable(array({})), imageId=nullable(INT), imageUrl=nullable(URL),
        thumbUrl=nullable(URL), previewUrl=nullable(URL)),
    "GenerationRun": obj(
        ("id", "status", "total", "done", "failed", "progress"),
        id=INT, status=enum(("Queued", "Running", "Done", "Failed", "Cancelled")), source=STR, total=INT,
        done=INT, failed=INT, progress=NUM, createdAt=DATE, finishedAt=nullable(DATE),
        request={"type": ["object", "string", "null"]}, grids=array(URL), eventsUrl=URL,
        jobs=array(ref("GenerationJob")), metadata=ref("PageMetadata")),
    "ModerationItem": obj(
        ("id", "nsfwLevel"), id=INT, url=URL, nsfwLevel=INT, nsfwLevelName=STR, source=nullable(STR),
        reports=array(STR), votes={"type": "object", "additionalProperties": NUM}, status=STR),
    "Health": obj(("status", "checks"), status=enum(("ok", "unavailable")), checks={
        "type": "object", "additionalProperties": obj(ok=BOOL, detail=STR)}),
}


# ---- the document -----------------------------------------------------------------------------------
TEXT = {"type": "string", "minLength": 1}
STANDARD = {400: "a parameter, header or the body is invalid (`error` says which)",
            401: "no API key where one is needed, or an invalid one",
            403: "the API key lacks the scope this operation needs",
            404: "no such object, or not visible to you",
            413: "the request body is too large",
            429: "too many requests: wait for Retry-After seconds"}


def path_of(rule, narrower: dict) -> tuple[str, list[dict]]:
    """The OpenAPI path of a URL rule and its path parameters, typed by the rule's converters."""
    params = []
    for name, converter in rule._converters.items():
        schema = TEXT
        if isinstance(converter, IntegerConverter):  # the bounds the converter matches; others are a 404
            schema = {"type": "integer", "minimum": 0 if converter.min is None else converter.min,
                      "maximum": INT64_MAX if converter.max is None else converter.max}
        params.append(param(name, narrower.get(name, schema), where="path", required=True))
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), params


def body_of(spec: APISpec, body) -> dict | None:
    """A requestBody: a pydantic model's schema (its nested models as components), or as given."""
    if body is None or isinstance(body, dict):
        return body
    name = body.__name__
    if name not in spec.components.schemas:
        schema = body.model_json_schema(ref_template="#/components/schemas/{model}")
        for sub, definition in schema.pop("$defs", {}).items():
            if sub not in spec.components.schemas:
                spec.components.schema(sub, definition)
        spec.components.schema(name, schema)
    return {"required": True, "content": {"application/json": {"schema": ref(name)}}}


def answers(d: Doc, scope: str | None, has_path: bool, body: dict | None, api: bool) -> dict:
    """The success answer, then the errors this kind of operation can give, then its own."""
    ok: dict = {"description": d.summary}
    if d.response is not None:
        ok["content"] = {d.media: {"schema": d.response}}
    codes = {d.status: ok}
    # 400 everywhere: any request with a NUL in its path or query is refused
    standard = {400: True, 401: api, 403: scope == "write", 404: has_path, 413: body is not None, 429: api}
    for code, wanted in standard.items():
        if wanted:
            codes[code] = STANDARD[code]
    codes.update(d.errors)
    error = {"application/json": {"schema": ref("Error")}}
    out = {}
    for code, value in codes.items():
        if isinstance(value, str):
            value = {"description": value, "content": error}
            if code == 429:
                value["headers"] = {"Retry-After": {"schema": INT}}
        out[str(code)] = value
    return out


def operation(spec: APISpec, view, has_path_params: bool, path_params: list, api: bool) -> dict:
    d: Doc = view.api_doc
    scope = getattr(view, "api_scope", None)
    body = body_of(spec, d.body)
    out = {"summary": d.summary, "tags": [d.tag], "parameters": path_params + d.params,
           "responses": answers(d, scope, has_path_params, body, api)}
    if body is not None:
        out["requestBody"] = body
    if scope:
        out["security"] = [{"bearer": []}, {"token": []}]
        out["description"] = f"Needs an API key with the `{scope}` scope."
    elif api:
        out["security"] = [{}, {"bearer": []}, {"token": []}]
    return out


def document(app, server_url: str) -> dict:
    spec = APISpec(
        "Atelier API", "1", "3.1.0", servers=[{"url": server_url}],
        info={"description": "Civitai-compatible REST API v1 plus creator uploads and generation. Auth: "
                             "`Authorization: Bearer <key>` or `?token=<key>` on any path."})
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme("token", {"type": "apiKey", "in": "query", "name": "token"})
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(DOCUMENTED):
            continue
        view = app.view_functions[rule.endpoint]
        if not hasattr(view, "api_doc"):
            raise LookupError(f"{rule.endpoint} ({rule.rule}) has no @doc for the OpenAPI document")
        path, params = path_of(rule, view.api_doc.path)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = operation(
                spec, view, bool(params), params, rule.rule.startswith("/api/"))
    for path, operations in paths.items():
        spec.path(path, operations=operations)
    return spec.to_dict()


@bp.get("/api/v1/openapi.json")
@doc("This document", "meta", response={"type": "object"})
def openapi():
    return jsonify(document(current_app, request.host_url.rstrip("/")))
