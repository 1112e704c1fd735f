"""MoEngage clients: post an event to the delivery tracking URL, write a subscription change
with the Data API's Track User. Each says only whether MoEngage accepted; knows no Flask."""

import logging
import time

import requests

from .httppool import ProcessSession

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 3.05
# The Data API asks for retries on 5xx; a short inline pair, then the event waits in the store.
DATA_API_RETRIES = 2
RETRY_PAUSE = 1.0


class NotAccepted(Exception):
    """MoEngage did not answer 2xx in time; the event stays pending."""


class MoEngageClient:
    def __init__(
        self, delivery_url, data_api_base, workspace_id, data_api_key, timeout, pool_size=10
    ):
        self.delivery_url = delivery_url
        self.track_user_url = f"{data_api_base}/v1/customer/{workspace_id}"
        self.data_api_auth = (workspace_id, data_api_key)
        self.timeout = (CONNECT_TIMEOUT, timeout)
        self._http = ProcessSession(pool_size, delivery_url, self.track_user_url).get

    def _post(self, url, payload, auth=None, retries=0):
        """POST; 2xx or NotAccepted. `retries` more tries after a 429, a 5xx or no answer."""
        while True:
            # Only the configured URL, never a redirect: a 3xx is a failure, not a new target.
            try:
                response = self._http().post(
                    url, json=payload, auth=auth, timeout=self.timeout, allow_redirects=False
                )
                status = response.status_code
            except requests.RequestException as exc:
                status, reason = None, f"no answer from MoEngage ({type(exc).__name__})"
            else:
                if 200 <= status < 300:
                    return status
                reason = f"MoEngage answered {status}"
            if not retries or (status is not None and status < 500 and status != 429):
                raise NotAccepted(reason)
            retries -= 1
            time.sleep(RETRY_PAUSE)

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
        """Send one outbox event where its target says; raise NotAccepted on failure."""
        if event.target == "data_api":
            return self.track_user(event.payload["customer_id"], event.payload["subscription"])
        return self.post_event(event.payload)
