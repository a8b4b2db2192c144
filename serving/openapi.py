"""The scoring service's OpenAPI document and docs page, as LeadScore declares them.

BentoML generates the paths and request/response models; this adds what it leaves out: the bearer-key security
scheme (and the metrics token), every status each route can answer with the shared error shape, and the feature
names, types and ranges of the model being served (so a client, and schemathesis, knows what `features` takes).
The docs page is Swagger UI from BentoML's own files, with nothing loaded from outside the machine (BentoML's page
loads a tag manager and Swagger UI's online validator badge).
"""

from __future__ import annotations

import copy
from typing import Any

from serving.features import MAX_INT, MAX_TEXT, FeatureRules

KEY_SCHEMES = [{"bearerKey": []}, {"apiKeyHeader": []}, {"bearerToken": []}]
REASONS = {400: "The body is not valid JSON", 401: "Missing, unknown or revoked key (WWW-Authenticate: Bearer)",
           403: "The key lacks the scope, or the lead has no consent for the purpose",
           404: "Unknown lead (or one of another tenant: the same answer)", 405: "Method not allowed",
           409: "The same lead sent twice with different features or messages (each copy is named)",
           413: "Body over LEADSCORE_SERVING_MAX_BODY", 422: "A field is invalid: each is named with the reason",
           429: "Over the key's rate (Retry-After says when to retry)",
           503: "A dependency (model, PostgreSQL, Redis, MLflow) is unavailable (Retry-After)"}
# what each route answers besides its 2xx (the handlers in service.py, privacy_api.py and middleware.py)
STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("/score", "post"): (400, 401, 403, 404, 413, 422, 429, 503),
    ("/rank", "post"): (400, 401, 403, 409, 413, 422, 429, 503),
    ("/admin/reload", "post"): (401, 403, 413, 429, 503),
    ("/consent", "post"): (400, 401, 403, 413, 422, 429, 503),
    ("/consent/{lead_id}", "get"): (401, 403, 422, 429, 503),
    ("/privacy/erasure", "post"): (400, 401, 403, 413, 422, 429, 503),
    ("/privacy/export/{lead_id}", "get"): (401, 403, 422, 429, 503),
    ("/metrics", "get"): (401,),
}
ERROR = {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string", "description": "what went wrong, in a few words"},
    "reason": {"type": "string", "description": "why, and what to do next"},
    "errors": {"type": "array", "items": {"type": "object", "required": ["field", "reason"], "properties": {
        "field": {"type": "string", "description": "where: 'leads[3].features.age', '(body)'"},
        "reason": {"type": "string"}}}},
    "lead_id": {"type": "string"}, "dependency": {"type": "string"}}}
DESCRIPTION = """Scores and ranks brokers' leads by their chance to convert, with an explanation per lead.

Every route but the health checks needs an API key (`leadscore serve keys create --tenant T`), sent as
`Authorization: Bearer ls_...` or `X-API-Key: ls_...`. Rates count leads (a /rank call costs its leads).
`/metrics` takes the metrics token from the state directory's secrets (`metrics_token`), not an API key.
Errors are JSON: `{"error": ..., "reason": ...}` or `{"error": ..., "errors": [{"field": ..., "reason": ...}]}`.
"""
INDEX_HTML = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>LeadScore scoring API</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
    <link rel="stylesheet" type="text/css" href="./static_content/index.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="./static_content/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="./docs-init.js" charset="UTF-8"></script>
  </body>
</html>
"""
INIT_JS = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "./docs.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl], layout: "StandaloneLayout",
  });
};
"""
# the page's own files only (Swagger UI sets inline styles and uses data: images)
INDEX_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
             "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def feature_schema(rules: FeatureRules) -> dict[str, Any]:
    """JSON Schema of the `features` object the served model takes: its names, types and the spec's ranges."""
    props: dict[str, Any] = {}
    for name in sorted(rules.numeric | rules.text | rules.dates):
        if name in rules.dates:
            prop: dict[str, Any] = {"type": "string", "format": "date"}
        elif name in rules.text:
            prop = {"type": "string", "maxLength": MAX_TEXT}
            if name in rules.allowed:
                prop = {"type": "string", "enum": sorted(rules.allowed[name])}
        else:
            kind = rules.kinds.get(name, "float")
            prop = {"type": {"int": "integer", "bool": "boolean"}.get(kind, "number")}
            if kind != "bool":
                lo, hi = rules.bounds.get(name, (None, None))
                prop["minimum"] = -MAX_INT if lo is None else lo
                prop["maximum"] = MAX_INT if hi is None else hi
        props[name] = {**prop, "nullable": True}
    return {"type": "object", "properties": props, "additionalProperties": False, "nullable": True,
            "description": "feature values that override or complete the stored ones (by name; null = missing)"}


def _nullable_fields() -> dict[str, set[str]]:
    """Per schema title, the fields that may be null (BentoML's 3.0 document drops pydantic's `anyOf [.., null]`)."""
    import typing

    from serving import privacy_api, schemas

    out: dict[str, set[str]] = {}
    for module in (schemas, privacy_api):
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, schemas.BaseModel) and cls.__module__ == module.__name__:
                names = {n for n, f in cls.model_fields.items() if type(None) in typing.get_args(f.annotation)}
                out[cls.__name__] = out[f"{cls.__name__}IODescriptor"] = names
    return out


def _mark_nullable(node: Any, nullable: dict[str, set[str]]) -> None:  # noqa: ANN401 - any JSON value
    if isinstance(node, dict):
        for name in nullable.get(node.get("title", ""), ()):
            prop = node.get("properties", {}).get(name)
            if isinstance(prop, dict) and "$ref" not in prop:
                prop["nullable"] = True
        for value in node.values():
            _mark_nullable(value, nullable)
    elif isinstance(node, list):
        for value in node:
            _mark_nullable(value, nullable)


def document(base: dict[str, Any], rules: FeatureRules | None, version: str) -> dict[str, Any]:
    """The served document: BentoML's `base` with security, every status and the model's feature schema."""
    doc = copy.deepcopy(base)
    doc["info"] = {"title": "LeadScore scoring API", "version": version, "description": DESCRIPTION}
    components = doc.setdefault("components", {})
    components["securitySchemes"] = {
        "bearerKey": {"type": "http", "scheme": "bearer", "description": "an API key: ls_<id>_<secret>"},
        "bearerToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                        "description": "a person's signed token (leadscore serve token): tenant, broker, role, exp"},
        "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "metricsToken": {"type": "http", "scheme": "bearer", "description": "the state directory's metrics_token"}}
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR
    for name, schema in schemas.items():
        schema.setdefault("title", name)
    _mark_nullable(doc, _nullable_fields())
    for name in ("InvalidArgument", "NotFound", "InternalServerError", "HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            responses = {str(code): r for code, r in op.get("responses", {}).items() if str(code).startswith("2")}
            for code in STATUSES.get((path, method), ()):
                responses[str(code)] = {"description": REASONS[code], "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            op["responses"] = responses
            if "requestBody" in op and path in ("/score", "/rank"):
                op["requestBody"]["required"] = True
            if (path, method) in STATUSES:
                op["security"] = [{"metricsToken": []}] if path == "/metrics" else KEY_SCHEMES
    if rules is not None:
        features = feature_schema(rules)
        for model in ("LeadInput", "ScoreRequestIODescriptor"):
            if "features" in schemas.get(model, {}).get("properties", {}):
                schemas[model]["properties"]["features"] = features
        body = doc["paths"].get("/score", {}).get("post", {}).get("requestBody", {})
        inline = body.get("content", {}).get("application/json", {}).get("schema", {})
        if "features" in inline.get("properties", {}):
            inline["properties"]["features"] = features
    return doc
