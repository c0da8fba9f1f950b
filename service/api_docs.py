"""The interactive API docs at /docs, served entirely by this service: no CDN, no inline script.

FastAPI's own /docs page loads Swagger UI from a CDN (an offline installation shows a blank page) and starts it
with an inline script (which a Content-Security-Policy without 'unsafe-inline' blocks). Here the Swagger UI
distribution comes from the `fastapi-swagger` package (its files only; it has no other role), and the page
starts it from /docs/start.js.
"""

from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response

DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · API docs</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"><link rel="icon" href="/docs/favicon.png">
</head><body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script><script src="/docs/start.js"></script>
</body></html>
"""
START = """SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
});
"""
# name under /docs/ -> (file in fastapi_swagger.resources, media type)
ASSETS = {
    "swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("swagger-ui.css", "text/css"),
    "favicon.png": ("favicon-32x32.png", "image/png"),
}


@cache
def _asset(file: str) -> bytes:
    return resources.files("fastapi_swagger.resources").joinpath(file).read_bytes()


def docs_router(title: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    page = PAGE.format(title=title)

    @router.get("/docs")
    def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": DOCS_POLICY})

    @router.get("/docs/")
    def docs_with_slash() -> RedirectResponse:
        """A relative redirect: never built from the Host header the client sent."""
        return RedirectResponse("/docs", status_code=307)

    @router.get("/docs/{name}")
    def docs_asset(name: str) -> Response:
        if name == "start.js":
            return Response(START, media_type="text/javascript")
        if name not in ASSETS:
            raise HTTPException(404, f"no /docs/{name}")
        file, media_type = ASSETS[name]
        return Response(_asset(file), media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})

    return router
