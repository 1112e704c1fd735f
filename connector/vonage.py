"""Vonage Messages API client: build the SMS request, send it within a deadline, map errors.

Knows nothing of Flask. Retries only what cannot send an SMS twice: a refused or timed-out
connection (the request never reached Vonage), a 5xx (Vonage did not take it), and a 429.
"""

import logging
import time
from email.utils import parsedate_to_datetime

import requests
from urllib3.exceptions import NewConnectionError

from . import trail
from .errors import Failure
from .httppool import ProcessSession

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 3.05  # just over a TCP retransmit window, as requests' docs advise
SERVER_RETRY_PAUSE = 0.2


class VonageError(Failure):
    """A send Vonage did not accept; `status` is the answer the connector gives MoEngage."""


# Vonage's HTTP status -> the connector's answer (contract section 1, failure table).
ANSWER_FOR = {400: 422, 401: 401, 403: 401, 402: 402, 422: 422}


def build_message(
    to, sender, text, client_ref=None, content_id=None, entity_id=None, webhook_url=None
):
    """The JSON body of POST /v1/messages for one SMS, unset fields left out."""
    message = {
        "message_type": "text",
        "channel": "sms",
        "to": to,
        "from": sender,
        "text": text,
        "webhook_version": "v1",
    }
    sms = {k: v for k, v in (("content_id", content_id), ("entity_id", entity_id)) if v}
    if sms:
        message["sms"] = sms
    if client_ref:
        message["client_ref"] = client_ref
    if webhook_url:
        message["webhook_url"] = webhook_url
    return message


def _problem(response):
    """'<title>: <detail>' from Vonage's RFC 7807 body, or the HTTP reason."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
    return ": ".join(parts) or response.reason or "no detail"


def _retry_after(response, default=1):
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return int(value)
    try:
        return max(0, int(parsedate_to_datetime(value).timestamp() - time.time() + 0.999))
    except (TypeError, ValueError):
        return default


class VonageClient:
    """One pooled `requests.Session` per process, shared by the worker's threads."""

    def __init__(self, base_url, pool_size=10):
        self.url = f"{base_url.rstrip('/')}/v1/messages"
        self._http = ProcessSession(pool_size, self.url).get

    def send(self, api_key, api_secret, message, timeout):
        """POST the message; return Vonage's message_uuid or raise VonageError.

        Every try, pause and honoured Retry-After fits in `timeout` seconds from now.
        """
        deadline = time.monotonic() + timeout
        server_retries = 1
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                raise VonageError(502, f"Vonage could not be reached within {timeout:g} s")
            try:
                response = self._http().post(
                    self.url,
                    json=message,
                    auth=(api_key, api_secret),
                    headers={"Accept": "application/json"},
                    timeout=(min(CONNECT_TIMEOUT, remaining), remaining),
                    allow_redirects=False,
                )
            except requests.ConnectionError as exc:
                if not _never_sent(exc):
                    # The request may have reached Vonage: a retry could send the SMS twice.
                    raise VonageError(
                        504,
                        "the connection to Vonage broke before it answered; "
                        "the SMS may have been sent",
                        remember=True,
                    ) from None
                if server_retries and self._pause(deadline, SERVER_RETRY_PAUSE):
                    server_retries -= 1
                    continue
                raise VonageError(502, "could not connect to Vonage") from None
            except requests.Timeout:
                # Read timeout: Vonage has the request and may have sent it. Never retried.
                raise VonageError(
                    504,
                    f"Vonage did not answer within {timeout:g} s; the SMS may have been sent",
                    remember=True,
                ) from None
            status = response.status_code
            trail.vonage_answered(status)
            if 200 <= status < 300:
                return _message_uuid(response)
            if status == 429:
                wait = _retry_after(response)
                # Retry only if the wait and one more try still fit before MoEngage gives up.
                if self._pause(deadline, wait, reserve=0.5):
                    continue
                raise VonageError(
                    429, f"Vonage 429: {_problem(response)}", retry_after=max(wait, 1)
                )
            if status >= 500 and server_retries and self._pause(deadline, SERVER_RETRY_PAUSE):
                server_retries -= 1
                continue
            answer = 502 if status >= 500 else ANSWER_FOR.get(status, 502)
            raise VonageError(answer, f"Vonage {status}: {_problem(response)}")

    @staticmethod
    def _pause(deadline, seconds, reserve=0.1):
        """Sleep `seconds` if that leaves `reserve` before the deadline; say whether it did."""
        if time.monotonic() + seconds + reserve >= deadline:
            return False
        time.sleep(seconds)
        return True


def _never_sent(exc):
    """True when the error proves no byte of the request reached Vonage (refused, no route,
    unknown host, connect timeout); a connection that broke later may have carried the send."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


def _message_uuid(response):
    try:
        uuid = response.json().get("message_uuid")
    except (ValueError, AttributeError):
        uuid = None
    if not uuid or not isinstance(uuid, str):
        raise VonageError(502, f"Vonage answered {response.status_code} without a message_uuid")
    return uuid
