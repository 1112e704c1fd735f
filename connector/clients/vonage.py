"""Vonage Messages API client: build the SMS request, send it within a deadline, map errors.

Knows nothing of Flask. Retries only what cannot send an SMS twice: a refused or timed-out
connection (the request never reached Vonage), a 5xx (Vonage did not take it), and a 429; at
most MAX_TRIES requests per send, all within its deadline, the answer's body included.
"""

import json
import logging
import math
import time
from collections import namedtuple
from email.utils import parsedate_to_datetime

from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as TimedOut

from connector.clients.http import Deadline, ProcessClient
from connector.errors import Failure

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 3.05  # just over a TCP retransmit window, as requests' docs advise
ACCEPT_JSON = {"Accept": "application/json"}
SERVER_RETRY_PAUSE = 0.2
MAX_TRIES = 3  # requests to Vonage per send, whatever it answers
MIN_RETRY_PAUSE = 0.5  # the least pause after a 429, whatever its Retry-After says


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


class Answer(namedtuple("Answer", "status headers body reason")):
    """Vonage's answer; `body` is None when it was cut off before its end."""

    def json(self):
        """The body as JSON, or None when it is not JSON (or was cut off)."""
        try:
            return json.loads(self.body)
        except (TypeError, ValueError):
            return None


def _problem(answer):
    """'<title>: <detail>' from Vonage's RFC 7807 body, or the HTTP reason."""
    body = answer.json()
    if not isinstance(body, dict):
        body = {}
    parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
    if answer.body is None:
        parts.append("its answer was cut off")
    return ": ".join(parts) or answer.reason or "no detail"


def _retry_after(response, default=1):
    """Seconds Vonage asks to wait: Retry-After as seconds or an HTTP date; never below
    MIN_RETRY_PAUSE, so `0` or a date in the past cannot turn retries into a flood."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            seconds = default
    if math.isnan(seconds):
        seconds = default
    return min(max(MIN_RETRY_PAUSE, seconds), 86400)


class VonageClient:
    """One pooled HTTP client per process (httppool.py), shared by the worker's threads."""

    def __init__(self, base_url, pool_size=10, account_url=None):
        self.url = f"{base_url.rstrip('/')}/v1/messages"
        self.balance_url = f"{(account_url or base_url).rstrip('/')}/account/get-balance"
        self._http = ProcessClient(pool_size, self.url, self.balance_url).get

    def send(self, api_key, api_secret, message, timeout, on_answer=None):
        """POST the message; return Vonage's message_uuid or raise VonageError.

        At most MAX_TRIES requests; every try, pause and honoured Retry-After, and the whole of
        each answer, fit in `timeout` seconds from now. `on_answer(status)` hears every HTTP
        answer (the send's trail row counts the tries).
        """
        deadline = Deadline(timeout)
        server_retries = 1
        for tries_left in range(MAX_TRIES - 1, -1, -1):
            if deadline.remaining() <= 0.05:
                raise VonageError(502, f"Vonage could not be reached within {max(timeout, 0):g} s")
            try:
                response = self._post(api_key, api_secret, message, deadline, timeout)
            except _NeverSent:
                if tries_left and server_retries and self._pause(deadline, SERVER_RETRY_PAUSE):
                    server_retries -= 1
                    continue
                raise VonageError(502, "could not connect to Vonage") from None
            status = response.status
            if on_answer is not None:
                on_answer(status)
            if 200 <= status < 300:
                return _message_uuid(response)
            if status == 429:
                wait = _retry_after(response)
                # Retry only if the wait and one more try still fit before MoEngage gives up.
                if tries_left and self._pause(deadline, wait, reserve=0.5):
                    continue
                raise VonageError(
                    429, f"Vonage 429: {_problem(response)}", retry_after=max(round(wait), 1)
                )
            retry = status >= 500 and tries_left and server_retries
            if retry and self._pause(deadline, SERVER_RETRY_PAUSE):
                server_retries -= 1
                continue
            answer = 502 if status >= 500 else ANSWER_FOR.get(status, 502)
            raise VonageError(answer, f"Vonage {status}: {_problem(response)}")
        raise AssertionError("unreachable: the last try always returns or raises")

    def _post(self, api_key, api_secret, message, deadline, timeout):
        """One request, its Answer read in full before the deadline (or marked cut off).

        Raises _NeverSent when no byte of the request left, VonageError 504 when it may have
        reached Vonage but no status came back.
        """
        response, remaining = None, max(deadline.remaining(), 0.01)
        try:
            with deadline.watch() as call:
                response = self._http().request(
                    "POST",
                    self.url,
                    body=message,
                    auth=(api_key, api_secret),
                    headers=ACCEPT_JSON,
                    timeout=(min(CONNECT_TIMEOUT, remaining), remaining),
                )
                body = response.read()
            if call.expired:  # http.client takes a stream cut inside the headers for their end
                raise _Cut()
        except (HTTPError, OSError, _Cut) as exc:
            if response is not None:  # the status came, the whole answer did not
                response.close()
                if call.expired and 200 <= response.status < 300:
                    raise VonageError(
                        504,
                        f"Vonage took the message but did not finish its answer within "
                        f"{timeout:g} s; the SMS may have been sent",
                        remember=True,
                    ) from None
                return Answer(response.status, response.headers, None, response.reason)
            if _never_sent(exc) or (call.expired and not call.sent):
                raise _NeverSent() from None
            if call.expired or isinstance(exc, (TimedOut, TimeoutError)):
                # Vonage has the request and may have sent it. Never retried.
                raise VonageError(
                    504,
                    f"Vonage did not answer within {timeout:g} s; the SMS may have been sent",
                    remember=True,
                ) from None
            # The connection broke after the request went out: a retry could send it twice.
            raise VonageError(
                504,
                "the connection to Vonage broke before it answered; the SMS may have been sent",
                remember=True,
            ) from None
        return Answer(response.status, response.headers, body, response.reason)

    def check_credentials(self, api_key, api_secret, timeout):
        """Return if Vonage's Account API accepts the key and secret (GET
        /account/get-balance answers 200 with the balance); raise VonageError 401 (as a send
        would) if it refuses them (401/403), VonageError 502 if it cannot tell within
        `timeout`: unreachable, too slow, or any other answer (a 5xx, a 404, a proxy's page)."""
        deadline = Deadline(timeout)
        response = None
        try:
            with deadline.watch() as call:
                response = self._http().request(
                    "GET",
                    self.balance_url,
                    auth=(api_key, api_secret),
                    headers=ACCEPT_JSON,
                    timeout=(min(CONNECT_TIMEOUT, max(timeout, 0.01)), max(timeout, 0.01)),
                )
                body = response.read()
                if call.expired:
                    raise _Cut()
        except (HTTPError, OSError, _Cut) as exc:
            if response is not None:
                response.close()
            refused = isinstance(exc, NewConnectionError)  # a ConnectTimeoutError too
            slow = call.expired or (isinstance(exc, (TimedOut, TimeoutError, _Cut)) and not refused)
            raise VonageError(
                502,
                f"Vonage's Account API did not answer within {timeout:.1f} s"
                if slow
                else f"Vonage's Account API could not be reached ({type(exc).__name__})",
            ) from None
        answer = Answer(response.status, response.headers, body, response.reason)
        if answer.status in (401, 403):
            raise VonageError(
                ANSWER_FOR[answer.status], f"Vonage {answer.status}: {_problem(answer)}"
            )
        if answer.status == 200 and _is_balance(answer):
            return
        if 200 <= answer.status < 300:
            kind = answer.headers.get("Content-Type", "no type").split(";")[0][:50]
            raise VonageError(
                502, f"Vonage's Account API answered {answer.status} without a balance ({kind})"
            )
        raise VonageError(502, f"Vonage's Account API answered {answer.status}: {_problem(answer)}")

    @staticmethod
    def _pause(deadline, seconds, reserve=0.1):
        """Sleep `seconds` if that leaves `reserve` before the deadline; say whether it did."""
        if deadline.remaining() < seconds + reserve:
            return False
        time.sleep(seconds)
        return True


class _Cut(Exception):
    """The deadline cut the answer: what was read of it may be incomplete."""


class _NeverSent(Exception):
    """No byte of the request reached Vonage: trying again cannot send the SMS twice."""


def _never_sent(exc):
    """True when the error proves no byte of the request reached Vonage (refused, no route,
    unknown host, connect timeout); a connection that broke later may have carried the send."""
    return isinstance(exc, ConnectTimeoutError)  # NewConnectionError is one too


def _is_balance(answer):
    """Is this the Account API's balance (`{"value": 10.28, "autoReload": false}`)? Anything
    else (a proxy's or a captive portal's page) confirms nothing."""
    body = answer.json()
    value = body.get("value") if isinstance(body, dict) else None
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _message_uuid(answer):
    """The message_uuid of a 2xx. A 2xx means Vonage took the message, so one without a
    readable message_uuid (HTML, empty, cut short, other JSON) is remembered like a 504: the
    SMS may go out, and no retry may send it again."""
    body = answer.json()
    uuid = body.get("message_uuid") if isinstance(body, dict) else None
    if not uuid or not isinstance(uuid, str):
        raise VonageError(
            502,
            f"Vonage answered {answer.status} but no message_uuid could be read from its answer; "
            "it took the message, which may have been sent, so it is not sent again",
            remember=True,
        )
    return uuid
