"""File bytes in an S3-compatible bucket (aiobotocore), content-addressed: ``<prefix>/<ab>/<sha256>``.

An upload is streamed: it is hashed as it arrives and sent in parts of :data:`PART_SIZE` as a
multipart upload, so at most one part per upload is in memory. Only when the sha256 of everything
received equals the name it was sent under is the upload completed (a multipart upload is invisible
until then; a small blob is sent whole with one PUT after the check); otherwise it is aborted. So an
object under a checksum's key always holds exactly those bytes.

aiobotocore is asynchronous, the store interface is called from the server's thread pool: the
client lives on an event loop of its own, in one thread, and the pool's calls wait on it. Reads
stream from that loop to the server's loop chunk by chunk. botocore retries throttling and
connection errors itself (standard mode); what still fails is answered ``503 blob_store_unavailable``
with ``Retry-After``, which clients retry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import urllib.parse
from typing import Any, AsyncIterator, Coroutine, Dict, List, Optional, Tuple

from ..errors import ApiError

__all__ = ["S3Blobs", "S3Upload", "S3Source", "PART_SIZE", "parse_s3_url"]

log = logging.getLogger("ml_dash.server")

#: Bytes per part of a multipart upload (S3's minimum is 5 MiB for every part but the last).
PART_SIZE = 8 << 20
_READ_CHUNK = 1 << 20


def parse_s3_url(url: str) -> Tuple[str, str]:
    """(bucket, key prefix without slashes) of ``s3://bucket/prefix``."""
    parts = urllib.parse.urlsplit(url)
    return parts.netloc, parts.path.strip("/")


def _unavailable(exc: BaseException) -> ApiError:
    log.warning("the blob store failed: %s", type(exc).__name__)
    return ApiError(
        503,
        "blob_store_unavailable",
        "the server's blob store is unavailable; retry later",
        headers={"Retry-After": "5"},
    )


def _not_found(exc: BaseException) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket") or status == 404


class S3Blobs:
    """Blobs in ``s3://bucket/prefix`` at ``endpoint`` (None: AWS)."""

    def __init__(
        self,
        url: str,
        endpoint: Optional[str] = None,
        region: str = "us-east-1",
        access_key_id: Optional[str] = None,
        secret_access_key: Optional[str] = None,
        part_size: int = PART_SIZE,
    ):
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        self.bucket, self.prefix = parse_s3_url(url)
        self.endpoint = endpoint
        self.part_size = part_size
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ml-dash-s3", daemon=True)
        self._thread.start()
        config = AioConfig(
            retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60, max_pool_connections=32
        )
        session = get_session()
        self._ctx = session.create_client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            config=config,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
        )
        self.client = self.call(self._ctx.__aenter__())

    def call(self, coro: Coroutine[Any, Any, Any], timeout: Optional[float] = 300) -> Any:
        """Run ``coro`` on the client's loop and wait for it (from any thread but that loop's)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def on_loop(self, coro: Coroutine[Any, Any, Any]) -> "asyncio.Future[Any]":
        """Run ``coro`` on the client's loop; a future the caller's own event loop can await."""
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def key(self, checksum: str) -> str:
        return f"{self.prefix}/{checksum[:2]}/{checksum}" if self.prefix else f"{checksum[:2]}/{checksum}"

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (a fresh test server, a first start)."""
        try:
            self.call(self.client.head_bucket(Bucket=self.bucket))
        except Exception as exc:
            if not _not_found(exc):
                raise
            self.call(self.client.create_bucket(Bucket=self.bucket))

    def size(self, checksum: str) -> Optional[int]:
        try:
            head = self.call(self.client.head_object(Bucket=self.bucket, Key=self.key(checksum)))
        except Exception as exc:
            if _not_found(exc):
                return None
            raise _unavailable(exc) from None
        return int(head["ContentLength"])

    def upload(self, checksum: str, limit: int) -> "S3Upload":
        return S3Upload(self, checksum, limit)

    def source(self, checksum: str, size: Optional[int]) -> "S3Source":
        return S3Source(self, checksum, size if size is not None else self.size(checksum) or 0)

    def close(self) -> None:
        try:
            self.call(self._ctx.__aexit__(None, None, None), timeout=10)
        except Exception:  # closing a client whose server is gone
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class S3Upload:
    """One upload in progress: ``write`` chunks, then ``finish`` (check, complete) or ``abort``."""

    def __init__(self, blobs: S3Blobs, checksum: str, limit: int):
        self.blobs = blobs
        self.checksum = checksum
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self._upload_id: Optional[str] = None
        self._parts: List[Dict[str, Any]] = []

    def _send_part(self) -> None:
        b, key = self.blobs, self.blobs.key(self.checksum)
        try:
            if self._upload_id is None:
                self._upload_id = b.call(b.client.create_multipart_upload(Bucket=b.bucket, Key=key))["UploadId"]
            number = len(self._parts) + 1
            got = b.call(
                b.client.upload_part(
                    Bucket=b.bucket, Key=key, UploadId=self._upload_id, PartNumber=number, Body=bytes(self._buffer)
                )
            )
        except ApiError:
            raise
        except Exception as exc:
            raise _unavailable(exc) from None
        self._parts.append({"ETag": got["ETag"], "PartNumber": number})
        self._buffer.clear()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise ApiError(413, "blob_too_large", f"blob is over the limit of {self.limit:,} bytes", limit=self.limit)
        self._hash.update(chunk)
        self._buffer += chunk
        if len(self._buffer) >= self.blobs.part_size:
            self._send_part()

    def finish(self) -> bool:
        """Check and publish; True when stored now, False when it was already there."""
        got = self._hash.hexdigest()
        if got != self.checksum:
            self.abort()
            raise ApiError(400, "checksum_mismatch", f"the bytes hash to {got}, not {self.checksum}", actual=got)
        b, key = self.blobs, self.blobs.key(self.checksum)
        if b.size(self.checksum) is not None:  # another process stored it meanwhile
            self.abort()
            return False
        try:
            if self._upload_id is None:
                b.call(b.client.put_object(Bucket=b.bucket, Key=key, Body=bytes(self._buffer)))
            else:
                if self._buffer:
                    self._send_part()
                b.call(
                    b.client.complete_multipart_upload(
                        Bucket=b.bucket, Key=key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
                    )
                )
                self._upload_id = None
        except ApiError:
            raise
        except Exception as exc:
            self.abort()
            raise _unavailable(exc) from None
        self._buffer = bytearray()
        return True

    def abort(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is not None:
            b, upload_id, self._upload_id = self.blobs, self._upload_id, None
            try:
                b.call(
                    b.client.abort_multipart_upload(Bucket=b.bucket, Key=b.key(self.checksum), UploadId=upload_id),
                    timeout=30,
                )
            except Exception:  # the bucket's lifecycle rule for incomplete uploads cleans up the rest
                log.warning("could not abort a multipart upload of blob %s", self.checksum)


class S3Source:
    """A stored object's bytes, streamed to the server's event loop."""

    def __init__(self, blobs: S3Blobs, checksum: str, size: int):
        self.blobs = blobs
        self.checksum = checksum
        self.size = size

    async def chunks(self, start: int, stop: int) -> AsyncIterator[bytes]:
        if stop <= start:
            return
        b = self.blobs
        on_s3 = b.on_loop

        try:
            got = await on_s3(
                b.client.get_object(Bucket=b.bucket, Key=b.key(self.checksum), Range=f"bytes={start}-{stop - 1}")
            )
        except Exception as exc:
            raise _unavailable(exc) from None
        body = got["Body"]
        try:
            while True:
                chunk = await on_s3(body.read(_READ_CHUNK))
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()
