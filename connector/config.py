"""Every setting in one place: environment (and `.env`) -> a typed, validated Settings."""

import os
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

from dotenv import load_dotenv

DEFAULT_OPT_OUT = "STOP,STOPALL,UNSUBSCRIBE,CANCEL,END,QUIT"
DEFAULT_OPT_IN = "START,YES,UNSTOP"
CONSOLE_PASSWORD_MIN = 12


def _positive(value):
    number = float(value)
    if not number > 0:
        raise ValueError(value)
    return number


def _words(value):
    return tuple(w.strip().upper() for w in value.split(",") if w.strip())


def _at_least_one(value):
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


@dataclass(frozen=True)
class Settings:
    moengage_delivery_url: str = ""
    vonage_signature_secrets: tuple = ()
    vonage_api_url: str = "https://api.nexmo.com"
    vonage_from: str = ""
    vonage_api_keys: tuple = ()  # empty: any key may send through this connector
    moengage_workspace_id: str = ""
    moengage_data_api_key: str = ""
    moengage_api_url: str = ""
    send_dedupe_seconds: float = 60.0
    vonage_timeout: float = 4.0
    vonage_max_rps: float = 0.0
    moengage_timeout: float = 5.0
    pending_sweep_seconds: float = 10.0
    public_url: str = ""
    database_path: str = "connector.db"
    database_url: str = ""
    # PostgreSQL connections per worker process, whatever GUNICORN_THREADS (a thread holds one
    # only for a query); instances x workers x this must fit the database plan's limit.
    database_pool_size: int = 4
    # Sizing (README): 50,000 sends a day with their status events take ~0.63 GB.
    retention_days: float = 5.0
    opt_out_keywords: tuple = _words(DEFAULT_OPT_OUT)
    opt_in_keywords: tuple = _words(DEFAULT_OPT_IN)
    log_level: str = "INFO"
    threads: int = 64  # GUNICORN_THREADS: sizes the HTTP connection pools
    # Warnings (connector/doctor.py): gone this long after their last evidence; warning 4 after
    # this long without a status webhook; each worker writes its counters this often.
    warning_clear_seconds: float = 1800.0
    status_silence_seconds: float = 600.0
    evidence_flush_seconds: float = 5.0
    console_password: str = ""  # CONSOLE_PASSWORD: "" keeps /console off (404)

    def __post_init__(self):
        if self.console_password and len(self.console_password) < CONSOLE_PASSWORD_MIN:
            # Never the value: it is a password.
            raise ValueError(
                f"CONSOLE_PASSWORD is shorter than {CONSOLE_PASSWORD_MIN} characters: set a "
                "longer one (or leave it empty to keep the console off)"
            )

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

    def problems(self):
        """What stops the connector from working, each with its fix (never a secret's value)."""
        found = []
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


_ENV = {
    "moengage_delivery_url": ("MOENGAGE_DELIVERY_URL", str),
    "vonage_signature_secrets": (
        "VONAGE_SIGNATURE_SECRET",
        lambda v: tuple(s.strip() for s in v.split(",") if s.strip()),
    ),
    "vonage_api_url": ("VONAGE_API_URL", lambda v: v.rstrip("/")),
    "vonage_from": ("VONAGE_FROM", str),
    "vonage_api_keys": (
        "VONAGE_API_KEYS",
        lambda v: tuple(k.strip() for k in v.split(",") if k.strip()),
    ),
    "moengage_workspace_id": ("MOENGAGE_WORKSPACE_ID", str),
    "moengage_data_api_key": ("MOENGAGE_DATA_API_KEY", str),
    "moengage_api_url": ("MOENGAGE_API_URL", str),
    "send_dedupe_seconds": ("SEND_DEDUPE_SECONDS", float),
    "vonage_timeout": ("VONAGE_TIMEOUT", float),
    "vonage_max_rps": ("VONAGE_MAX_RPS", float),
    "moengage_timeout": ("MOENGAGE_TIMEOUT", float),
    "pending_sweep_seconds": ("PENDING_SWEEP_SECONDS", float),
    "public_url": ("PUBLIC_URL", str),
    "database_path": ("DATABASE_PATH", str),
    "database_url": ("DATABASE_URL", str),
    "database_pool_size": ("DATABASE_POOL_SIZE", _at_least_one),
    "retention_days": ("RETENTION_DAYS", _positive),
    "opt_out_keywords": ("OPT_OUT_KEYWORDS", _words),
    "opt_in_keywords": ("OPT_IN_KEYWORDS", _words),
    "log_level": ("LOG_LEVEL", lambda v: v.upper()),
    "threads": ("GUNICORN_THREADS", int),
    "warning_clear_seconds": ("WARNING_CLEAR_SECONDS", float),
    "status_silence_seconds": ("STATUS_SILENCE_SECONDS", float),
    "evidence_flush_seconds": ("EVIDENCE_FLUSH_SECONDS", float),
    "console_password": ("CONSOLE_PASSWORD", str),
}


def load_settings(overrides=None, environ=None):
    """Read the environment (after `.env`), then apply `overrides` (a dict of field names).

    A malformed number raises ValueError naming the variable, so a typo fails loudly at start.
    """
    if environ is None:
        load_dotenv()
        environ = os.environ
    values = {}
    for name, (var, parse) in _ENV.items():
        raw = environ.get(var, "").strip()
        if raw:
            try:
                values[name] = parse(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not a valid value") from None
    values.update(overrides or {})
    known = {f.name for f in fields(Settings)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}")
    return Settings(**values)
