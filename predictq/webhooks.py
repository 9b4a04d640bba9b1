"""Verify predictq's signed webhooks (Standard Webhooks) in a receiver.

Receivers::

    from predictq.webhooks import verify, WebhookVerificationError
    try:
        event = verify(request_body_bytes, request_headers, "whsec_...")
    except WebhookVerificationError:
        return 400
"""

from core.webhooks import WebhookVerificationError, new_secret, sign, signed_headers, verify

__all__ = ["WebhookVerificationError", "new_secret", "sign", "signed_headers", "verify"]
