"""The one exception type of the server's request handling, turned into a JSON error body by the app."""

from __future__ import annotations

from typing import Any, Dict, Optional

__all__ = ["ApiError"]


class ApiError(Exception):
    """An answer other than success: HTTP status, machine-readable code, human message, extra fields.

    Raised anywhere below the routes (parsing, validation, storage); the app's middleware renders it
    as ``{"error": {"code", "message"}, **extra}``. Only this type carries a 4xx: anything else that
    escapes a handler is a bug and becomes a logged 500.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Optional[Dict[str, str]] = None,
        **extra: Any,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> Dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}, **self.extra}
