"""What a route works with: this app's Services, and work to do once the answer is sent."""

from flask import after_this_request, current_app

from connector.relay.services import of


def services():
    return of(current_app)


def run_after_response(task):
    """Run `task()` once this request's answer is sent, so the client does not wait for it."""

    @after_this_request
    def schedule(response):
        response.call_on_close(task)
        return response
