"""Every setting declared once (SETTINGS), read from the environment and `.env` (the
environment winning) into a typed Settings; a value outside what its declaration allows stops
the start. gunicorn.conf.py reads its own values through the same declarations."""

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit

from dotenv import find_dotenv, load_dotenv

from connector.setting_schema import Setting, SettingError

DEFAULT_OPT_OUT = "STOP,STOPALL,UNSUBSCRIBE,CANCEL,END,QUIT"
DEFAULT_OPT_IN = "START,YES,UNSTOP"

REQUIRED, SENDING, MOENGAGE = "Required", "Sending", "MoEngage"
REPLIES, STORAGE, SERVER = "Replies and console", "Storage and logging", "gunicorn"

# One declaration per setting, as a table: kept compact on purpose.
# fmt: off
SETTINGS = (
    Setting(
        "MOENGAGE_DELIVERY_URL", "moengage_delivery_url", "url", "",
        "MoEngage's SMS delivery tracking URL (Settings > Channels > SMS > your custom sender > "
        "Delivery tracking); every delivery event and inbound reply is posted to this exact URL, "
        "query string included. Empty: the connector starts, and `/health` answers 503 naming it",
        REQUIRED, required=True, example="https://api-01.moengage.com/sms/dlr/custom/1?a=b",
    ),
    Setting(
        "VONAGE_SIGNATURE_SECRET", "vonage_signature_secrets", "list", "",
        "the account's signature secret (Vonage Dashboard > Settings > Signed webhooks); a "
        "comma-separated list accepts any of them, for rotation. Empty: `/health` answers 503",
        REQUIRED, secret=True, required=True, example="old-secret,new-secret",
    ),
    Setting(
        "VONAGE_API_URL", "vonage_api_url", "url", "https://api.nexmo.com",
        "base URL of the Messages API (regional: `https://api-eu.nexmo.com`, ...); sends go to "
        "`{VONAGE_API_URL}/v1/messages`. The Account API (a key and secret checked before an "
        "opt-out is told) is `https://rest.nexmo.com` for Vonage's own hosts, this URL for any "
        "other (a stand-in, a proxy)",
        SENDING, adds="/v1/messages", example="https://api-eu.nexmo.com",
    ),
    Setting(
        "VONAGE_FROM", "vonage_from", "text", "",
        "sender (number or alphanumeric Sender ID, e.g. Acme) when a send names none",
        SENDING, example="Acme",
    ),
    Setting(
        "VONAGE_API_KEYS", "vonage_api_keys", "list", "",
        "comma-separated Vonage API keys this connector sends for; a send with any other key "
        "gets 401 without a call to Vonage. `/health` says whether it is set (`api_keys_limited`)",
        SENDING, none="none: any key", example="abcd1234,efgh5678",
    ),
    Setting(
        "SEND_DEDUPE_SECONDS", "send_dedupe_seconds", "number", "60",
        "window in which an identical send (same API key and secret, sender, recipient, text, "
        "campaign) is answered from the first instead of sent again",
        SENDING, minimum=0, unit="seconds", zero="off",
    ),
    Setting(
        "VONAGE_TIMEOUT", "vonage_timeout", "number", "4",
        "seconds a send may wait for Vonage, all tries and Vonage's whole answer included (a send "
        "is answered within it + 0.5 s); keep it under MoEngage's 5 s. At least 1: a send waits "
        "for its `VONAGE_MAX_RPS` slot until 1 s before it",
        SENDING, minimum=1, maximum=30, unit="seconds",
    ),
    Setting(
        "VONAGE_MAX_RPS", "vonage_max_rps", "number", "0",
        "most sends per second per Vonage API key, shared by all workers, and with "
        "`DATABASE_URL` by every instance (docs/setup.md, Send rate); Vonage's default limit "
        "is 30",
        SENDING, minimum=0, unit="sends per second", zero="no limit",
    ),
    Setting(
        "PUBLIC_URL", "public_url", "url", "",
        "the connector's public base URL (e.g. `https://sms-connector.example.com`); when set, "
        "each send asks Vonage to post its status to `{PUBLIC_URL}/webhooks/status`, otherwise "
        "the Dashboard's status URL is used",
        SENDING, adds="/webhooks/status", example="https://sms.example.com",
    ),
    Setting(
        "DEFAULT_COUNTRY", "default_country", "region", "",
        "the country (ISO 3166 alpha-2, e.g. GB, US, IN) a number written in national form "
        "(without its country code) is read in",
        SENDING, none="none: numbers must carry their country code", example="GB",
    ),
    Setting(
        "MOENGAGE_WORKSPACE_ID", "moengage_workspace_id", "text", "",
        "MoEngage Data API workspace ID; with `MOENGAGE_DATA_API_KEY`, STOP/START replies set "
        "the user's `moe_sms_subscription` to OPTOUT/OPTIN",
        MOENGAGE, none="none: sync off", example="WS123",
    ),
    Setting(
        "MOENGAGE_DATA_API_KEY", "moengage_data_api_key", "text", "",
        "MoEngage Data API key, for the opt-out sync above",
        MOENGAGE, secret=True, none="none: sync off", example="data-api-key",
    ),
    Setting(
        "MOENGAGE_API_URL", "moengage_api_url", "url", "",
        "base URL of MoEngage's Data API",
        MOENGAGE, adds="/v1/customer", none="scheme and host of MOENGAGE_DELIVERY_URL",
        example="https://api-02.moengage.com",
    ),
    Setting(
        "MOENGAGE_TIMEOUT", "moengage_timeout", "number", "5",
        "seconds a forward to MoEngage may take, inline retries and MoEngage's whole answer "
        "included",
        MOENGAGE, minimum=1, maximum=60, unit="seconds",
    ),
    Setting(
        "PENDING_SWEEP_SECONDS", "pending_sweep_seconds", "number", "10",
        "while requests arrive, one worker of all forwards what is still pending this often",
        MOENGAGE, minimum=0, unit="seconds", zero="never (Vonage's retries and `flask push` only)",
    ),
    Setting(
        "OPT_OUT_KEYWORDS", "opt_out_keywords", "words", DEFAULT_OPT_OUT,
        "replies that opt the sender out", REPLIES, example="STOP,ARRET",
    ),
    Setting(
        "OPT_IN_KEYWORDS", "opt_in_keywords", "words", DEFAULT_OPT_IN,
        "replies that opt the sender back in", REPLIES, example="START",
    ),
    Setting(
        "CONSOLE_PASSWORD", "console_password", "password", "",
        "the operator console's password",
        REPLIES, secret=True, none="none: console off", example="correct-horse-battery",
    ),
    Setting(
        "DATABASE_URL", "database_url", "postgres", "",
        "a PostgreSQL database; when set, state lives there and `DATABASE_PATH` is not used "
        "(Heroku's and Render's Postgres set it)",
        STORAGE, secret=True, none="none: SQLite", example="postgresql://app@127.0.0.1/app",
    ),
    Setting(
        "DATABASE_PATH", "database_path", "text", "connector.db",
        "the SQLite file (created if missing), relative to the working directory",
        STORAGE, example="state/connector.db",
    ),
    Setting(
        "DATABASE_POOL_SIZE", "database_pool_size", "integer", "4",
        "PostgreSQL connections per worker process, whatever `GUNICORN_THREADS`; keep instances "
        "x `WEB_CONCURRENCY` x this under the database plan's connection limit",
        STORAGE, minimum=1, unit="connections",
    ),
    Setting(
        "RETENTION_DAYS", "retention_days", "number", "5",
        "days sends (and so `client_ref`s) and events MoEngage already has are kept, then "
        "deleted by the workers every few minutes; fractions allowed (`1.5`). At least 1, as "
        "Vonage redelivers webhooks for 24 h. Pending events, opt-outs and contacts are never "
        "deleted",
        STORAGE, minimum=1, unit="days",
    ),
    Setting(
        "WARNING_CLEAR_SECONDS", "warning_clear_seconds", "number", "1800",
        "a warning (`/health`, `flask doctor`) disappears this long after its last evidence",
        STORAGE, minimum=0, above=True, unit="seconds",
    ),
    Setting(
        "STATUS_SILENCE_SECONDS", "status_silence_seconds", "number", "600",
        "warn when sends Vonage accepted this long ago got no status webhook since",
        STORAGE, minimum=0, above=True, unit="seconds",
    ),
    Setting(
        "EVIDENCE_FLUSH_SECONDS", "evidence_flush_seconds", "number", "5",
        "each worker writes the warnings' counters to the database at most this often",
        STORAGE, minimum=0, unit="seconds", zero="after every request",
    ),
    Setting("LOG_LEVEL", "log_level", "choice", "INFO", "logging level", STORAGE, example="debug"),
    Setting(
        "PORT", "port", "integer", "8000", "port gunicorn binds (on 0.0.0.0)",
        SERVER, minimum=1, maximum=65535,
    ),
    Setting(
        "WEB_CONCURRENCY", "workers", "integer", "4", "gunicorn worker processes",
        SERVER, minimum=1, unit="processes",
    ),
    Setting(
        "GUNICORN_THREADS", "threads", "integer", "64",
        "threads per worker: requests in flight; they share their worker's "
        "`DATABASE_POOL_SIZE` connections",
        SERVER, minimum=1, unit="threads",
    ),
    Setting(
        "GUNICORN_TIMEOUT", "gunicorn_timeout", "integer", "30",
        "a worker silent this long is restarted (a send answers within `VONAGE_TIMEOUT`, a "
        "webhook within about 15 s: this only catches a stuck worker)",
        SERVER, minimum=1, unit="seconds",
    ),
    Setting(
        "GUNICORN_GRACEFUL_TIMEOUT", "gunicorn_graceful_timeout", "integer", "30",
        "on a stop or reload, what a worker may take to finish the requests it holds",
        SERVER, minimum=1, unit="seconds",
    ),
    Setting(
        "GUNICORN_KEEPALIVE", "gunicorn_keepalive", "integer", "5",
        "an idle kept-alive connection is closed after this long",
        SERVER, minimum=1, unit="seconds",
    ),
    Setting(
        "GUNICORN_REUSE_PORT", "gunicorn_reuse_port", "switch", "0",
        "0: one listening socket shared by the workers, each taking a new connection only while "
        "it holds no more than the least loaded worker (plus 2), so a `kill -HUP` reload resets "
        "nothing and a port in use stops the start; 1: each worker has its own `SO_REUSEPORT` "
        "socket (a reload resets what was queued on a stopping worker's socket, and another "
        "copy can bind the same port)",
        SERVER,
    ),
)
# fmt: on


@dataclass(frozen=True)
class Settings:
    """The values of SETTINGS, typed; load_settings() builds it (its fields are checked against
    the declarations as this module loads, so neither can gain a setting alone)."""

    moengage_delivery_url: str
    vonage_signature_secrets: tuple = field(repr=False)
    vonage_api_url: str
    vonage_from: str
    vonage_api_keys: tuple  # empty: any key may send through this connector
    send_dedupe_seconds: float
    vonage_timeout: float
    vonage_max_rps: float
    public_url: str
    default_country: str  # upper case, or "" (numbers must carry their country code)
    moengage_workspace_id: str
    moengage_data_api_key: str = field(repr=False)
    moengage_api_url: str
    moengage_timeout: float
    pending_sweep_seconds: float
    opt_out_keywords: tuple
    opt_in_keywords: tuple
    console_password: str = field(repr=False)  # "": the console is off
    database_url: str = field(repr=False)
    database_path: str
    database_pool_size: int
    retention_days: float
    warning_clear_seconds: float
    status_silence_seconds: float
    evidence_flush_seconds: float
    log_level: str
    port: int
    workers: int
    threads: int  # also sizes the HTTP connection pools
    gunicorn_timeout: int
    gunicorn_graceful_timeout: int
    gunicorn_keepalive: int
    gunicorn_reuse_port: bool
    # Lenient loading (an app being built, see load_settings): what was refused, each of those
    # settings at its default meanwhile. Any of it stops start() and opening the store.
    rejected: tuple = ()

    @property
    def data_api_enabled(self):
        return bool(self.moengage_workspace_id and self.moengage_data_api_key)

    @property
    def data_api_base(self):
        """The Data API host: set explicitly, or the delivery URL's scheme and host."""
        if self.moengage_api_url:
            return self.moengage_api_url.rstrip("/")
        parts = urlsplit(self.moengage_delivery_url)
        return f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""

    @property
    def vonage_account_url(self):
        """Vonage's Account API (checks a key and secret): at rest.nexmo.com for Vonage's own
        hosts; anything else named in VONAGE_API_URL (a stand-in, a proxy) serves both."""
        host = urlsplit(self.vonage_api_url).hostname or ""
        if host.endswith((".nexmo.com", ".vonage.com")):
            return "https://rest.nexmo.com"
        return self.vonage_api_url

    @property
    def status_webhook_url(self):
        return f"{self.public_url.rstrip('/')}/webhooks/status" if self.public_url else ""

    def problems(self) -> list[str]:
        """What stops the connector from working, each with its fix (never a secret's value):
        settings a one-click deploy may leave empty, so /health answers 503 naming them."""
        found = list(self.rejected)
        if not self.moengage_delivery_url:
            found.append(
                "MOENGAGE_DELIVERY_URL is not set: copy the SMS delivery tracking URL "
                "from MoEngage (Settings > Channels > SMS > your sender) into it"
            )
        elif urlsplit(self.moengage_delivery_url).scheme not in ("http", "https"):
            found.append("MOENGAGE_DELIVERY_URL must be an http(s) URL")
        if not self.vonage_signature_secrets:
            found.append(
                "VONAGE_SIGNATURE_SECRET is not set: copy the signature secret from the "
                "Vonage Dashboard (Settings > Signed webhooks)"
            )
        return found


_DECLARED = {setting.field for setting in SETTINGS}
_FIELDS = {f.name for f in fields(Settings)} - {"rejected"}
if _DECLARED != _FIELDS or len(_DECLARED) != len(SETTINGS):
    raise RuntimeError("connector/settings.py: SETTINGS and Settings name different settings")


def load_settings(
    overrides: dict | None = None,
    environ: Mapping[str, str] | None = None,
    lenient: bool = False,
) -> Settings:
    """Read the environment (after `.env`; the environment wins), then apply `overrides` (a
    dict of field names, typed: tests and the rehearsal, which use time scales no operator
    would). Every value outside what its declaration allows is named in one SettingError, or,
    `lenient`, in `Settings.rejected`: building the app for `flask --help` or `rehearse`
    (which read no setting) must not fail on a setting they do not use."""
    if environ is None:
        # The working directory's `.env` (docs/settings.md), whoever runs this: without
        # usecwd, python-dotenv looks beside the calling file unless __main__ has no file.
        load_dotenv(find_dotenv(usecwd=True))
        environ = os.environ
    overrides = overrides or {}
    unknown = set(overrides) - _DECLARED
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}")
    values, problems = {}, []
    for setting in SETTINGS:
        if setting.field in overrides:
            continue
        try:
            values[setting.field] = setting.read(environ.get(setting.env, ""))
        except ValueError as exc:
            problems.append(str(exc))
            values[setting.field] = setting.read("")
    if problems and not lenient:
        raise SettingError(problems)
    return Settings(**values, **overrides, rejected=tuple(problems))


def load_or_exit(environ: Mapping[str, str] | None = None) -> Settings:
    """load_settings() for a server starting: a bad value stops it with the message alone."""
    try:
        return load_settings(environ=environ)
    except SettingError as exc:
        sys.exit(str(exc))
