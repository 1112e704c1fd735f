"""Errors as data: each failure carries the HTTP answer it becomes; one handler renders it."""


class Failure(Exception):
    """A request the connector answers with `status` and `{"status": "failed", "error": reason}`."""

    def __init__(self, status, reason, retry_after=None, remember=False):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        # Only a 504 is remembered: Vonage may have sent it, so a retry must not send again.
        self.remember = remember

    def answer(self):
        return {"status": "failed", "error": self.reason}
