"""The callback URL of a new job: `?callback_url=`, else the tenant's default from PREDICTQ_WEBHOOK_DEFAULTS."""

from __future__ import annotations

from flask import Request

from api.errors import ApiError
from core.settings import Settings
from core.webhooks import tenant_defaults
from jobs.webhooks import AllowList, CallbackRefused, check_callback_url


def requested_callback(req: Request, settings: Settings, tenant: str) -> str | None:
    """The URL to notify when the job closes, or None; 400 when webhooks are off or the URL is refused."""
    url = req.args.get("callback_url") or tenant_defaults(settings.webhook_defaults).get(tenant)
    if not url:
        return None
    if not settings.webhook_secret:
        raise ApiError(400, "webhooks_not_configured",
                       "this server sends no webhooks (PREDICTQ_WEBHOOK_SECRET is not set)", {})
    try:
        return check_callback_url(url, AllowList.parse(settings.webhook_allowed_hosts))
    except CallbackRefused as exc:
        raise ApiError(400, "invalid_callback_url", str(exc), {"callback_url": url[:200]}) from None
