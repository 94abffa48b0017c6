"""The reader-study API (``/api/study...``) as a router of its own.

Readers authenticate with their own token (``Authorization: Bearer <reader token>``), not
the server's; :func:`study_router` needs only an open :class:`medsr.study.Study` (or None:
every call answers 404).
"""

# No ``from __future__ import annotations``: the routes' parameters name the reader
# dependency defined inside study_router, which FastAPI resolves only from evaluated
# annotations.
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from medsr.errors import (
    AlreadyAnsweredError,
    InvalidAnswerError,
    InvalidTokenError,
    StudyError,
    UnknownItemError,
)
from medsr.study.design import Reader
from medsr.web.security import bearer

__all__ = ["LoginIn", "PreferenceIn", "RatingIn", "study_router"]

_STUDY_STATUS = {
    InvalidAnswerError: 422,
    UnknownItemError: 404,
    InvalidTokenError: 401,
    AlreadyAnsweredError: 409,
}


class RatingIn(BaseModel):
    """A rating-mode answer: 1-5 scores (whole numbers), flags, comment."""

    model_config = ConfigDict(extra="forbid")
    quality: StrictInt
    usefulness: StrictInt
    flags: list[StrictStr] = Field(default_factory=list)
    comment: StrictStr = ""
    elapsed_s: float | None = None


class PreferenceIn(BaseModel):
    """A pairwise answer: ``left``, ``right`` or ``none``, and a comment."""

    model_config = ConfigDict(extra="forbid")
    choice: StrictStr
    comment: StrictStr = ""
    elapsed_s: float | None = None


class LoginIn(BaseModel):
    token: StrictStr


def _http(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def _study_error(error: StudyError) -> HTTPException:
    for cls, status in _STUDY_STATUS.items():
        if isinstance(error, cls):
            return _http(status, str(error))
    return _http(400, str(error))


def study_router(study) -> APIRouter:
    """The study API for ``study`` (a :class:`medsr.study.Study`, or None: 404s)."""
    router = APIRouter(tags=["study"])

    def opened():
        if study is None:
            raise _http(404, "no reader study is served here")
        return study

    def current_reader(authorization: Annotated[str | None, Header()] = None) -> Reader:
        """The reader whose token is in ``Authorization: Bearer <token>`` (401 otherwise)."""
        s = opened()
        try:
            return s.authenticate(bearer(authorization) or "")
        except InvalidTokenError as error:
            raise _http(401, str(error)) from None

    ReaderDep = Annotated[Reader, Depends(current_reader)]

    @router.get("/api/study")
    def study_info() -> dict[str, Any]:
        """The study's title, mode and answer scales (no case or method names)."""
        from medsr.study import CHOICES, FLAGS, LIKERT_ANCHORS, SCALES

        s = opened()
        return {
            "title": s.title,
            "mode": s.mode,
            "scales": SCALES,
            "anchors": {str(k): v for k, v in LIKERT_ANCHORS.items()},
            "flags": FLAGS,
            "choices": CHOICES,
        }

    @router.post("/api/study/login")
    def study_login(body: LoginIn) -> dict[str, Any]:
        """Check a reader token; answers the reader's label and progress."""
        s = opened()
        try:
            reader = s.authenticate(body.token)
        except InvalidTokenError as error:
            raise _http(401, str(error)) from None
        progress = s.progress(reader)
        return {"reader": reader.label, "answered": progress.answered, "total": progress.total}

    @router.get("/api/study/next")
    def study_next(reader: ReaderDep) -> dict[str, Any]:
        """The reader's first unanswered item (``item`` null when all are answered)."""
        s = opened()
        item = s.next_item(reader)
        progress = s.progress(reader)
        return {
            "reader": reader.label,
            "answered": progress.answered,
            "total": progress.total,
            "item": None if item is None else _item_view(item),
        }

    @router.get("/api/study/items")
    def study_items(reader: ReaderDep) -> list[dict[str, Any]]:
        """All of the reader's items in their order (opaque ids only)."""
        return [_item_view(item) for item in opened().reader_items(reader)]

    @router.get("/api/study/items/{item_id}")
    def study_item(item_id: str, reader: ReaderDep) -> dict[str, Any]:
        """One of the reader's items with the reader's current answer (to change it)."""
        s = opened()
        try:
            item = s.get_item(reader, item_id)
            answer = s.get_answer(reader, item_id)
        except StudyError as error:
            raise _study_error(error) from None
        data = _item_view(item)
        data["answer"] = None if answer is None else _answer_json(answer)
        return data

    @router.post("/api/study/items/{item_id}/answer")
    def study_answer(
        item_id: str, body: RatingIn | PreferenceIn, reader: ReaderDep
    ) -> dict[str, Any]:
        """Store an answer (rating mode: quality and usefulness 1-5; pairwise: choice).
        422 for an invalid answer, 404 for an item not the reader's, 409 when changing
        answers is not allowed."""
        from medsr.study import Preference, Rating

        s = opened()
        try:
            if s.mode == "rating":
                if not isinstance(body, RatingIn):
                    raise InvalidAnswerError("this study asks for quality and usefulness scores")
                answer = Rating(
                    quality=body.quality,
                    usefulness=body.usefulness,
                    comment=body.comment,
                    flags=tuple(body.flags),
                )
            else:
                if not isinstance(body, PreferenceIn):
                    raise InvalidAnswerError("this study asks for a choice: left, right or none")
                answer = Preference(choice=body.choice, comment=body.comment)
            saved = s.submit(reader, item_id, answer, elapsed_s=body.elapsed_s)
        except StudyError as error:
            raise _study_error(error) from None
        progress = s.progress(reader)
        return {
            "item_id": saved.item_id,
            "revision": saved.revision,
            "answered": progress.answered,
            "total": progress.total,
        }

    @router.get("/api/study/images/{image_id}", responses={200: {"content": {"image/png": {}}}})
    def study_image(image_id: str, reader: ReaderDep) -> Response:
        """A study image (PNG, rendered once with the case's fixed window)."""
        try:
            path = opened().image_path(image_id)
        except StudyError as error:
            raise _study_error(error) from None
        return FileResponse(path, media_type="image/png")

    return router


def _item_view(item) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "position": item.position,
        "total": item.total,
        "images": [f"/api/study/images/{i}" for i in item.images],
        "answered": item.answered,
    }


def _answer_json(answer) -> dict[str, Any]:
    from medsr.study import Rating

    if isinstance(answer, Rating):
        return {
            "quality": answer.quality,
            "usefulness": answer.usefulness,
            "flags": list(answer.flags),
            "comment": answer.comment,
        }
    return {"choice": answer.choice, "comment": answer.comment}
