"""MoEngage clients: post an event to the delivery tracking URL, write a subscription change
with the Data API's Track User. Each says only whether MoEngage accepted; knows no Flask.
Every call, its tries and MoEngage's whole answer included, ends within MOENGAGE_TIMEOUT, and
goes through the worker's Gate (moengage_gate.py), so a hung MoEngage holds few threads."""

import logging
import time

from urllib3.exceptions import HTTPError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from connector.clients.http import Deadline, ProcessClient
from connector.clients.moengage_gate import Gate, NotAccepted, Shed

__all__ = ["MoEngageClient", "NotAccepted", "Shed"]

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 3.05
# The Data API asks for retries on 5xx; a short inline pair, then the event waits in the store.
DATA_API_RETRIES = 2
RETRY_PAUSE = 1.0
MIN_TRY = 0.5  # a retry is made only if this much time is left after its pause


class MoEngageClient:
    def __init__(
        self,
        delivery_url,
        data_api_base,
        workspace_id,
        data_api_key,
        timeout,
        pool_size=10,
        max_waiting=2,
    ):
        self.gate = Gate(max_waiting)
        self.delivery_url = delivery_url
        self.track_user_url = f"{data_api_base}/v1/customer/{workspace_id}"
        self.data_api_auth = (workspace_id, data_api_key)
        self.timeout = timeout
        self._http = ProcessClient(pool_size, delivery_url, self.track_user_url).get

    def _post(self, url, payload, auth=None, retries=0):
        """POST; 2xx or NotAccepted. `retries` more tries after a 429, a 5xx or no answer, and
        all of them, pauses and answers included, end within the timeout."""
        deadline = Deadline(self.timeout)
        while True:
            status, reason, timed_out = self._try(url, payload, auth, deadline)
            if status is not None and 200 <= status < 300:
                return status
            if not retries or (status is not None and status < 500 and status != 429):
                raise NotAccepted(reason, timed_out)
            if deadline.remaining() < RETRY_PAUSE + MIN_TRY:
                raise NotAccepted(f"{reason}; no time left to try again", timed_out)
            retries -= 1
            time.sleep(RETRY_PAUSE)

    def _try(self, url, payload, auth, deadline):
        """One POST under the deadline: (status or None, reason, whether it timed out)."""
        # Only the configured URL, never a redirect: a 3xx is a failure, not a new target.
        response = None
        remaining = max(deadline.remaining(), 0.001)
        try:
            with deadline.watch() as call:
                response = self._http().request(
                    "POST",
                    url,
                    body=payload,
                    auth=auth,
                    timeout=(min(CONNECT_TIMEOUT, remaining), remaining),
                )
                response.read()  # for the connection's reuse, in time
        except (HTTPError, OSError) as exc:
            if call.expired:
                reason = f"no answer from MoEngage within {self.timeout:g} s"
            else:
                reason = f"no answer from MoEngage ({type(exc).__name__})"
            if response is None:
                return None, reason, call.expired or isinstance(exc, Urllib3Timeout)
            response.close()  # the status came: MoEngage's verdict, whatever became of the rest
        return response.status, f"MoEngage answered {response.status}", False

    def post_event(self, payload):
        """POST one event to the delivery tracking URL, exactly as configured (query included)."""
        return self._post(self.delivery_url, payload)

    def track_user(self, customer_id, subscription):
        """Set the user's `moe_sms_subscription` (OPTOUT / OPTIN) with Track User."""
        body = {
            "type": "customer",
            "customer_id": customer_id,
            "attributes": {"moe_sms_subscription": subscription},
        }
        return self._post(
            self.track_user_url, body, auth=self.data_api_auth, retries=DATA_API_RETRIES
        )

    def deliver(self, event):
        """Send one outbox event where its target says; raise NotAccepted on failure, Shed
        (at once) when the gate refuses the call."""
        return self.gate.call(event.target, lambda: self._deliver(event))

    def _deliver(self, event):
        if event.target == "data_api":
            return self.track_user(event.payload["customer_id"], event.payload["subscription"])
        return self.post_event(event.payload)
