"""The HTTP API of ``atrous serve`` (FastAPI on uvicorn, the ``serve`` extra).

    GET  /          the web page (drop an image, see the overlay and the classes' areas)
    GET  /health    {"status": "ok", the model, the queue, what the batcher did}
    GET  /classes   every class: id, name, colour
    POST /segment   the image file's bytes as the body; ?format=json (default: per-class
                    areas, ?labels=true adds the label PNG in base64), labels (PNG of class
                    ids), overlay or color (PNG)
    GET  /docs      the OpenAPI documentation (the schema at /openapi.json)

Limits, each answered with a status and one line of JSON ``{"detail": ...}``, never a crash:
a body of more than ``max_bytes`` or an image of more than ``max_pixels`` pixels (read from the
header, before decoding: a decompression bomb) → 413; an empty or undecodable file, or an image
smaller than the model's output stride → 400 with the reason; a full queue → 503.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, some imported in create_app.

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from ..data.base import DatasetError
from ..data.image_files import ImageTooLargeError, decode_image_bytes
from ..errors import InputError, UserError, require_extra
from .batcher import MicroBatcher, QueueFullError
from .limits import Limits
from .service import Format, Segmenter


def require_serve() -> tuple[Any, Any]:
    """``(fastapi, uvicorn)``, or a :class:`~atrous.errors.MissingExtraError` naming the extra."""
    return require_extra("fastapi", "serve", "atrous serve"), require_extra("uvicorn", "serve", "atrous serve")


def create_app(segmenter: Segmenter, limits: Limits | None = None) -> Any:
    """The FastAPI application serving ``segmenter`` (see the module docstring)."""
    fastapi, _ = require_serve()
    from fastapi import Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    limits = limits or Limits()
    batcher = MicroBatcher(segmenter.labels, max_batch=limits.max_batch, max_wait=limits.max_wait,
                           max_queue=limits.max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()  # after uvicorn has let in-flight requests finish

    app = fastapi.FastAPI(title="atrous serve", version="1", lifespan=lifespan,
                          description="Semantic segmentation of one image per request, batched on the server.")
    app.state.batcher, app.state.segmenter = batcher, segmenter

    def refuse(status: int, detail: str) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return resources.files("atrous.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, what is served, and the queue."""
        return {"status": "ok", "model": segmenter.name, "num_classes": segmenter.classes.num_classes,
                "waiting": batcher.waiting, "batching": batcher.stats.as_dict(),
                "limits": {"max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels,
                           "max_batch": limits.max_batch, "max_queue": limits.max_queue}}

    @app.get("/classes")
    async def classes() -> list[dict[str, Any]]:
        """Every class the model predicts: id (the value in the label PNG), name, colour."""
        return segmenter.legend()

    @app.post(
        "/segment",
        responses={200: {"content": {"image/png": {}}, "description": "areas (JSON) or a PNG"},
                   400: {"description": "empty, undecodable or too small image"},
                   413: {"description": "too many bytes or pixels"}, 503: {"description": "queue full"}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    )
    async def segment(request: Request, format: Format = "json",
                      labels: bool = Query(False, description="with format=json: add the label PNG (base64)")) -> Any:
        """Segment the image file sent as the request body (PNG, JPEG, WebP, ...)."""
        started = time.perf_counter()
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
            return refuse(413, f"the body has {int(declared):,} bytes, more than the limit of {limits.max_bytes:,} (--max-bytes)")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_bytes:
                return refuse(413, f"the body has more than the limit of {limits.max_bytes:,} bytes (--max-bytes)")
        if not body:
            return refuse(400, "empty body: send the image file's bytes as the request body")
        try:
            image = await asyncio.to_thread(decode_image_bytes, bytes(body), "upload", limits.max_pixels)
            segmenter.check_size(*image.shape[:2])
        except ImageTooLargeError as err:
            return refuse(413, f"the image has {err.pixels:,} pixels, more than the limit of {err.limit:,} (--max-pixels)")
        except (DatasetError, InputError) as err:
            return refuse(400, str(err))
        try:
            label_map = await batcher.submit(image)
        except QueueFullError as err:
            return refuse(503, str(err))
        except UserError as err:  # what the engine refuses to take; anything else is a bug: 500
            return refuse(400, str(err))
        answer = await asyncio.to_thread(segmenter.answer, format, image, label_map, with_labels=labels)
        elapsed = f"{(time.perf_counter() - started) * 1000:.1f}"
        if isinstance(answer, bytes):
            return Response(answer, media_type="image/png", headers={"X-Latency-Ms": elapsed})
        return JSONResponse({**answer, "latency_ms": float(elapsed)}, headers={"X-Latency-Ms": elapsed})

    return app


def serve(segmenter: Segmenter, *, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
          log_level: str = "info") -> None:
    """Run the API until Ctrl-C or SIGTERM; in-flight requests are answered before it stops."""
    _, uvicorn = require_serve()
    uvicorn.run(create_app(segmenter, limits), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30)


@contextlib.contextmanager
def running(app: Any, host: str = "127.0.0.1") -> Any:
    """Serve ``app`` from a background thread on a free port of ``host``; yields the base URL
    (``http://127.0.0.1:PORT``). On exit the server stops as on SIGTERM: in-flight requests are
    answered first. For tests and the load benchmark."""
    import socket
    import threading

    _, uvicorn = require_serve()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="atrous-serve", daemon=True)
    thread.start()
    try:
        for _ in range(600):  # bounded: 60 s for startup (the lifespan starts the batcher)
            if server.started or not thread.is_alive():
                break
            time.sleep(0.1)
        if not server.started:
            raise RuntimeError("the server did not start")
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()
