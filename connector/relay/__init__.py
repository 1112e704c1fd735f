"""The rules, as plain functions with no Flask: a send (decide, send, record), the statuses and
replies forwarded to MoEngage (outbox), opt-outs, the send rate, retention, and the Services
one app works with."""
