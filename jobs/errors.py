"""Typed errors of the job service; the API maps JobNotFound to 404 and JobExpired to 410."""

from __future__ import annotations

from model.errors import PredictqError


class JobNotFound(PredictqError):
    """No live job with this id for this tenant (another tenant's job is reported the same way)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")
        self.job_id = job_id


class JobExpired(PredictqError):
    """The job existed but its retention time has passed; its data is gone (HTTP 410)."""

    def __init__(self, job_id: str, expired_at: str) -> None:
        super().__init__(f"job {job_id!r} expired at {expired_at}; its results were deleted")
        self.job_id = job_id
        self.expired_at = expired_at

