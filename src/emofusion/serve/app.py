"""The FastAPI application: ``POST /predict``, ``POST /predict/batch``, ``GET /model``,
``GET /health``, speaker enrolment for speaker-adaptive models (``POST /enrol``,
``GET /speakers``, ``DELETE /speakers/{speaker}``), the web page at ``/`` and OpenAPI docs at
``/docs``.

Every refused request gets a 4xx JSON answer ``{"detail": "what to fix"}``: `RequestProblem`
carries its own status; FastAPI's validation errors become 400 (malformed JSON) or 422; a body
over the size limit is cut off with 413 while it streams in. Feature extraction and inference
run in worker threads (at most ``workers`` at once), never on the event loop, and a prediction
that takes longer than ``timeout`` seconds is answered with 503.
"""

from __future__ import annotations

import hmac
from importlib import resources
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, File, Form, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from emofusion.errors import EmofusionError, MissingExtraError
from emofusion.inference import MIN_ADAPTATION_UTTERANCES
from emofusion.serve.inputs import (
    RequestProblem,
    Utterance,
    decode_base64,
    feature_arrays,
    parse_features,
    video_suffix,
)
from emofusion.serve.service import PredictionService

MAX_BATCH = 64
STATIC = ("index.html", "app.js")
FORM_PARSER_MESSAGES = ("There was an error parsing the body", "Field exceeded maximum size")
"""Starts of the form parser's own 400 messages (FastAPI, Starlette), which lack a fix."""
FORM_FIX = ("send a well-formed multipart form with files as file parts and text fields under "
            "1 MiB; send large feature arrays as JSON to /predict/batch")


class BatchItem(BaseModel):
    """One utterance of a batch; send any of the fields the model uses."""

    audio_base64: str | None = Field(None, description="a wav, flac or ogg file, base64-encoded")
    text: str | None = Field(None, description="the transcript (any script)")
    video_base64: str | None = Field(None, description="a video file, base64-encoded")
    video_suffix: str | None = Field(None, description="the video's file suffix, e.g. .mp4")
    features: dict[str, Any] | None = Field(
        None, description="modality -> array (d,) or rows (T, d), as `emofusion extract` wrote")
    speaker: str | None = Field(
        None, description="who speaks: a speaker-adaptive model uses this speaker's enrolment")


class Batch(BaseModel):
    """Several utterances answered in one request, in order."""

    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH)


class UploadTooLarge(HTTPException):
    """The request body passed the size limit while it was being received."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request is larger than this service accepts ({limit:,} bytes); "
                              "send a shorter recording or fewer items")


class BodySizeLimit:
    """ASGI middleware: refuse a body over ``limit`` bytes, by its Content-Length before reading,
    or by counting while it streams in (chunked uploads)."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            problem = (UploadTooLarge(self.limit) if declared.isdigit()
                       else HTTPException(400, "the Content-Length header is not a number"))
            response = JSONResponse({"detail": problem.detail}, status_code=problem.status_code)
            await response(scope, receive, send)
            return
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise UploadTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


def _validation_message(error: RequestValidationError) -> tuple[int, str]:
    """FastAPI's validation error list as (status, one readable sentence)."""
    problems = error.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        context = next(p for p in problems if p.get("type") == "json_invalid").get("ctx", {})
        return 400, (f"the body is not valid JSON ({context.get('error', 'parse error')}); send "
                     '{"items": [{"text": ..., "features": {...}, "audio_base64": ...}]}')
    parts = [f"{'.'.join(str(x) for x in p.get('loc', ()) if x != 'body') or 'body'}: {p.get('msg')}"
             for p in problems[:5]]
    return 422, "; ".join(parts) + " (see /docs for the request format)"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, error: RequestValidationError) -> JSONResponse:
        status, message = _validation_message(error)
        return JSONResponse({"detail": message}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        detail = str(error.detail)
        if detail.startswith(FORM_PARSER_MESSAGES):
            detail = f"{detail.rstrip('.')}: {FORM_FIX}"
        return JSONResponse({"detail": detail}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestProblem)
    async def request_problem(_: Request, error: RequestProblem) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.exception_handler(EmofusionError)
    async def emofusion_error(_: Request, error: EmofusionError) -> JSONResponse:
        status = 503 if isinstance(error, MissingExtraError) else 422
        return JSONResponse({"detail": str(error)}, status_code=status)


API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="required when the service was started with --api-key")


def _key_check(api_key: str | None):
    """A dependency that refuses requests without the right ``X-API-Key`` (when a key is set)."""

    async def check(given: Annotated[str | None, Security(API_KEY_HEADER)] = None) -> None:
        if api_key and not (given and hmac.compare_digest(given.encode(), api_key.encode())):
            raise HTTPException(401, "missing or wrong API key; send it in the X-API-Key header")

    return check


async def _read_upload(upload: UploadFile | None) -> bytes | None:
    return None if upload is None else await upload.read()


async def _form_utterance(
    audio: Annotated[UploadFile | None, File(description="wav, flac or ogg, any rate")] = None,
    text: Annotated[str | None, Form(description="the transcript, any script")] = None,
    video: Annotated[UploadFile | None, File(description="a video file")] = None,
    features: Annotated[str | None, Form(
        description='JSON: {"modality": [numbers] or [[numbers], ...]}')] = None,
    speaker: Annotated[str | None, Form(
        description="who speaks (speaker-adaptive models: see POST /enrol)")] = None,
) -> Utterance:
    """One utterance from a multipart form."""
    return Utterance(audio=await _read_upload(audio), text=text, video=await _read_upload(video),
                     video_suffix=video_suffix(video.filename if video else None),
                     features=parse_features(features) if features is not None else {},
                     speaker=speaker)


def create_app(service: PredictionService, *, api_key: str | None = None,
               max_upload_bytes: int = 25 * 2**20, workers: int = 2,
               timeout: float = 60.0) -> FastAPI:
    """The application answering with `service`.

    Args:
        service: the loaded model.
        api_key: when set, every endpoint but ``/health`` and the page needs ``X-API-Key``.
        max_upload_bytes: largest request body.
        workers: predictions running at once (threads); others wait their turn.
        timeout: seconds one request may take before it is answered with 503.
    """
    app = FastAPI(title="emofusion", version="1",
                  description="Speech, text and face emotion recognition with one saved model. "
                              "Send only what the model uses (see GET /model).")
    app.add_middleware(BodySizeLimit, limit=max_upload_bytes)
    _add_error_handlers(app)
    limiter = anyio.CapacityLimiter(workers)
    protected = [Depends(_key_check(api_key))]

    async def answer(function, *args):
        try:
            with anyio.fail_after(timeout):
                return await anyio.to_thread.run_sync(function, *args, limiter=limiter,
                                                      abandon_on_cancel=True)
        except TimeoutError as error:
            raise HTTPException(503, f"the prediction took longer than {timeout:g} s; "
                                     "try again or send a shorter recording") from error

    @app.post("/predict", dependencies=protected)
    async def predict(utterance: Annotated[Utterance, Depends(_form_utterance)]) -> dict[str, Any]:
        """Predict one utterance from any of audio, transcript, video and feature arrays."""
        return await answer(service.predict, utterance)

    @app.post("/enrol", dependencies=protected)
    async def enrol(utterance: Annotated[Utterance, Depends(_form_utterance)]) -> dict[str, Any]:
        """Keep one unlabelled utterance of ``speaker`` (speaker-adaptive models): once the
        speaker has enough, /predict with that speaker normalises with them."""
        return await answer(service.enrol, utterance)

    @app.get("/speakers", dependencies=protected)
    async def speakers() -> dict[str, Any]:
        """Enrolled speakers and how many utterances each has."""
        return {"speakers": service.enrolment.counts(), "min_utterances": MIN_ADAPTATION_UTTERANCES}

    @app.delete("/speakers/{speaker}", dependencies=protected)
    async def forget(speaker: str) -> dict[str, Any]:
        """Forget an enrolled speaker."""
        if not service.enrolment.remove(speaker):
            raise HTTPException(404, f"speaker {speaker!r} is not enrolled; GET /speakers lists "
                                     "the enrolled speakers")
        return {"removed": speaker}

    @app.post("/predict/batch", dependencies=protected)
    async def predict_batch(batch: Batch) -> dict[str, Any]:
        """Predict several utterances (JSON, media base64-encoded); answers in the same order."""
        utterances = [_at_item(k, _batch_utterance, item) for k, item in enumerate(batch.items)]
        return {"predictions": await answer(_predict_all, service, utterances)}

    @app.get("/model", dependencies=protected)
    async def model() -> dict[str, Any]:
        """Labels, modalities, extractors, protocol and training record of the served model."""
        return service.describe()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, and whether requests need an API key."""
        return {"status": "ok", "api_key_required": bool(api_key)}

    _add_page(app)
    return app


def _add_page(app: FastAPI) -> None:
    pages = {name: (resources.files("emofusion.serve") / "static" / name).read_text("utf-8")
             for name in STATIC}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return pages["index.html"]

    @app.get("/app.js", include_in_schema=False)
    async def script() -> Response:
        return Response(pages["app.js"], media_type="text/javascript")


def _at_item(index: int, function, *args):
    """``function(*args)``, with the item's position in front of any problem it raises."""
    try:
        return function(*args)
    except RequestProblem as problem:
        raise RequestProblem(f"items[{index}]: {problem}", problem.status) from problem


def _batch_utterance(item: BatchItem) -> Utterance:
    def media(value: str | None, name: str) -> bytes | None:
        return None if value is None else decode_base64(value, name)

    return Utterance(audio=media(item.audio_base64, "audio_base64"), text=item.text,
                     video=media(item.video_base64, "video_base64"),
                     video_suffix=video_suffix(f"video{item.video_suffix or ''}"),
                     features=feature_arrays(item.features) if item.features is not None else {},
                     speaker=item.speaker)


def _predict_all(service: PredictionService, utterances: list[Utterance]) -> list[dict[str, Any]]:
    return [_at_item(k, service.predict, utterance) for k, utterance in enumerate(utterances)]
