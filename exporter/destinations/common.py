"""What every destination type shares: its description for the integration service, and body checks.

A `DestinationKind` is a destination type as the integration service sees it: the body fields it
takes (its container or bucket, and its credential fields), how they are checked, how the credential
part becomes the one secret text sealed at rest (an Azure connection string as it is; the S3 and GCS
credential parts as JSON) and back, how the masked credentials are shown, and how a client is opened.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from ..egress import EgressRefused
from ..errors import DestinationError, ExporterError, InputError, InternalError
from ..export.destination import Destination
from ..validation import check_text

VERIFY_CONTENT = b"Verification file written by the event export. Safe to delete.\n"
DELETE_NOTE = "the credentials may not delete objects, so the test file stays in the bucket; you may delete it by hand"
MAX_PREFIX = 512
MAX_SECRET = 4096
# Unicode bidirectional controls (embeddings, overrides, isolates): they make a path read differently from
# what it is ("Trojan Source"), so a prefix may not hold them.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

ENDPOINT_HINT = "Only for S3-compatible storage or an emulator; leave empty for the cloud service."
Check = Callable[[object, str], object]  # (value, field) -> the checked value, or InputError naming the field


@dataclass(frozen=True)
class Form:
    """What a person reads about a type in the console: its name, and a label for each of its body fields."""

    title: str  # "Amazon S3"
    labels: Mapping[str, str]  # every body field but `type` and `prefix` -> its label
    secret: frozenset[str] = frozenset()  # shown only masked, so never filled in (left empty, the stored value stays)
    json: frozenset[str] = frozenset()  # a JSON document pasted whole: sent as an object
    hints: Mapping[str, str] = field(default_factory=dict)
    prefix_label: str = "Path Prefix"


@dataclass(frozen=True)
class DestinationKind:
    """A destination type: its body, its secret, its client and its form; registered by one line in
    exporter/destinations/__init__.py, from which the API, the console and the CLI take it."""

    name: str  # the body's "type": azure_blob, s3, gcs
    container_field: str  # what the body calls the container: "container" or "bucket"
    check_container: Check  # that type's naming rule (None passes where the container is optional)
    credential_checks: Mapping[str, Check]  # the body's credential fields and their checks
    required: tuple[str, ...]  # the fields a complete body must give
    to_secret: Callable[[Mapping[str, object]], str]  # checked credential fields -> the secret text (sealed at rest)
    from_secret: Callable[[str], dict[str, object]]  # the secret text -> its credential fields (to merge an update)
    open: Callable[[str, str | None, str], Destination]  # (secret, container, prefix) -> a client
    shown: Callable[[str], dict[str, object]]  # the stored masked credentials -> the fields the API shows
    form: Form  # the console's words for it
    # "module:attribute" of its LocalKind (exporter/local/kinds.py): the demo's and the tests' server and target.
    # A name, not an import, so the deployed code never loads the local tools.
    local: str = ""
    # KEYLESS HOOK (issue 24): a check across credential fields, e.g. S3's role or access key, not both.
    check_together: Callable[[Mapping[str, object], bool], None] | None = None  # (checked fields, partial)
    # KEYLESS HOOK (issue 24): credential forms that exclude each other (a key, or keyless); an update giving
    # one form's fields drops the other form's stored ones.
    credential_forms: tuple[frozenset[str], ...] = ()

    def __post_init__(self) -> None:
        # A field without a label would fail in the console, long after the type was added: refuse it here.
        unlabelled = sorted(self.parameter_fields - set(self.form.labels))
        if unlabelled:
            raise ValueError(f"destination type {self.name!r}: no label for {', '.join(unlabelled)}")

    @property
    def parameter_fields(self) -> frozenset[str]:
        """The body fields of this type besides `type` and `prefix`."""
        return frozenset({self.container_field, *self.credential_checks})

    def check(self, given: Mapping[str, object], *, partial: bool) -> dict[str, object]:
        """Check a body's own fields (no `type`, no `prefix`); a complete body (`partial=False`) gives every required one."""
        foreign = sorted(set(given) - self.parameter_fields)
        if foreign:
            raise InputError(f"is not a field of an {self.name!r} destination", field=f"destination.{foreign[0]}")
        checked: dict[str, object] = {}
        for name, value in given.items():
            check = self.check_container if name == self.container_field else self.credential_checks[name]
            checked[name] = check(value, f"destination.{name}")
        if not partial:
            for name in self.required:
                if checked.get(name) is None:
                    raise InputError("is required", field=f"destination.{name}")
        if self.check_together is not None:  # KEYLESS HOOK (issue 24)
            self.check_together(checked, partial)
        return checked

    def credentials(self, parameters: Mapping[str, object]) -> dict[str, object]:
        """The credential fields among checked parameters."""
        return {k: v for k, v in parameters.items() if k in self.credential_checks}

    def complete(self, given: Mapping[str, object]) -> bool:
        """Whether given credential fields are a whole credential (an update then opens no stored secret)."""
        if not self.credential_forms:
            return set(given) == set(self.credential_checks)
        shared = set(self.credential_checks).difference(*self.credential_forms)
        return any(shared | form <= set(given) for form in self.credential_forms)

    def merged(self, stored: Mapping[str, object], given: Mapping[str, object]) -> dict[str, object]:
        """An update's credential fields over the stored ones; giving one form's fields drops the other forms'."""
        other = {name for form in self.credential_forms if not form & set(given) for name in form}
        if not any(form & set(given) for form in self.credential_forms):
            other = set()  # only shared fields given (a region, an endpoint): the stored form stays
        return {**{k: v for k, v in stored.items() if k not in other}, **given}


class Sealable(Protocol):
    def to_secret(self) -> str: ...


@dataclass(frozen=True)
class BucketBody:
    """The body of a type whose container is a bucket and whose credential part is sealed as JSON (S3, GCS)."""

    check_bucket: Check
    credential_checks: Mapping[str, Check]
    required: tuple[str, ...]
    credentials: Callable[[Mapping[str, object]], Sealable]  # checked credential fields -> the credentials
    check_together: Callable[[Mapping[str, object], bool], None]  # KEYLESS HOOK (issue 24)

    def kind(
        self,
        name: str,
        opened: Callable[[str, str, str], Destination],  # (secret, bucket, prefix) -> a client
        form: Form,
        credential_forms: tuple[frozenset[str], ...],
        local: str,
    ) -> DestinationKind:
        """The destination type: its masked credentials are shown as the JSON they are stored as."""
        return DestinationKind(
            name=name,
            container_field="bucket",
            check_container=self.check_bucket,
            credential_checks=self.credential_checks,
            required=self.required,
            to_secret=lambda fields: self.credentials(fields).to_secret(),
            from_secret=json.loads,
            open=lambda secret, bucket, prefix: opened(secret, bucket or "", prefix),
            shown=json.loads,
            form=form,
            local=local,
            check_together=self.check_together,
            credential_forms=credential_forms,
        )


def text_field(fields: Mapping[str, object], name: str) -> str | None:
    """A checked text field of a body (a container, a key id); None when it is not given."""
    value = fields.get(name)
    if value is not None and not isinstance(value, str):
        raise InternalError(f"destination.{name} was not checked as text")
    return value


def check_prefix(value: object, field: str = "destination.prefix") -> str:
    """A path prefix, the same rule for every type; null is the container or bucket root."""
    prefix = "" if value is None else value
    if (
        not isinstance(prefix, str)
        or len(prefix) > MAX_PREFIX
        or "\\" in prefix
        or any(unicodedata.category(c) == "Cc" or c in BIDI_CONTROLS for c in prefix)
    ):
        raise InputError(
            f"must be a path of at most {MAX_PREFIX} characters without control characters, "
            "bidirectional text controls or '\\'",
            field=field,
        )
    # Outer slashes are dropped when the prefix is joined (export.naming.join_prefix); inside, a '.' or '..'
    # segment would be resolved away by URL normalization and an empty one names a different path.
    check_text(prefix, field)
    segments = prefix.strip("/").split("/") if prefix.strip("/") else []
    if any(segment in ("", ".", "..") for segment in segments):
        raise InputError(
            "must not have '.' or '..' segments or empty ones such as 'a//b' (a leading or trailing '/' is fine)",
            field=field,
        )
    return prefix


def check_token(value: object, field: str, what: str, max_length: int = MAX_SECRET) -> str:
    """A non-empty string without whitespace or control characters (keys, key ids)."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > max_length
        or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value)
    ):
        raise InputError(
            f"must be {what}: a non-empty string without spaces, at most {max_length} characters", field=field
        )
    check_text(value, field)
    return value


def check_endpoint_url(value: object, field: str = "destination.endpoint_url") -> str | None:
    """Optional http(s) base URL; no user info, query or fragment (they could carry secrets into responses)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 2048:
        raise InputError("must be an http(s) URL such as https://s3.eu-west-1.amazonaws.com", field=field)
    check_text(value, field)
    try:
        parts = urlsplit(value.strip())
    except ValueError:  # an unclosed IPv6 bracket
        raise InputError("must be an http(s) URL such as https://s3.eu-west-1.amazonaws.com", field=field) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError("must be an http(s) URL such as https://s3.eu-west-1.amazonaws.com", field=field)
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InputError("must be a plain base URL: no user name, password, query or fragment", field=field)
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise InputError("has an invalid port", field=field) from None
    return value.strip().rstrip("/")


# ------------------------------------------------------------------ failures, in our words

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})  # statuses that may pass by themselves
REDIRECTS = frozenset({301, 302, 303, 307, 308})  # never followed at a customer's address (exporter/egress.py)
Classify = Callable[[BaseException], "ExporterError | None"]  # None: not the destination's failure (a bug of ours)


def translated(exc: BaseException, classify: Classify) -> ExporterError:
    """Our error for a failure the destination knows (its SDK's, its server's answers, the egress policy's);
    anything else is a bug of ours and is re-raised as it is, with its traceback (the worker records it as one)."""
    if isinstance(exc, ExporterError):
        return exc
    error = classify(exc)
    if error is None:
        raise exc
    return error


@contextmanager
def mapped(classify: Classify) -> Iterator[None]:
    """The one error map of a destination call: a known failure becomes ours (its SDK text, which may carry a
    URL with a SAS, dropped); an unknown one passes untouched."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - translated re-raises what it does not know
        raise translated(exc, classify) from None


class ErrorMap:
    """A destination's one error map: `with errors.mapped(operation):` around every call to its SDK.

    `classify` settles our own errors and the egress policy's refusals; `known` (per destination) names the
    provider's failures; anything left is a bug of ours and passes untouched.
    """

    @contextmanager
    def mapped(self, operation: str | None = None, *, verifying: bool = False) -> Iterator[None]:
        with mapped(lambda exc: self.classify(exc, operation, verifying=verifying)):
            yield

    def classify(
        self, exc: BaseException, operation: str | None = None, *, verifying: bool = False
    ) -> ExporterError | None:
        """Our error for a failure of the destination or of the way to it; None for anything else (a bug of ours)."""
        answer = settled(exc, verifying)
        return answer if answer is not None else self.known(exc, operation, verifying)

    def known(self, exc: BaseException, operation: str | None, verifying: bool) -> ExporterError | None:
        raise NotImplementedError


def refusal_in(exc: BaseException) -> EgressRefused | None:
    """The egress policy's refusal behind an SDK's exception (SDKs wrap what a connection raised)."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 16:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        if isinstance(item, EgressRefused):
            return item
        seen.append(item)
        kwargs = getattr(item, "kwargs", None)  # botocore keeps the cause as kwargs["error"]
        todo.extend([item.__cause__, item.__context__, *item.args, *(kwargs or {}).values()])
    return None


def settled(exc: BaseException, verifying: bool) -> ExporterError | None:
    """Ours already, or the egress policy's refusal behind an SDK's wrapping; None: for the destination's own map."""
    if isinstance(exc, ExporterError):
        return exc
    refused = refusal_in(exc)
    return None if refused is None else refused_answer(refused, verifying)


def refused_answer(refused: EgressRefused, verifying: bool) -> ExporterError:
    """At verification a 400 naming the field; later (an export) a destination error that stops delivery."""
    if verifying:
        return refused.as_input_error()
    return DestinationError(f"{refused.field}: {refused.reason}", field=refused.field)


def mask_middle(text: str, keep: int = 4) -> str:
    """'AKIAIOSFODNN7EXAMPLE' -> 'AKIA************MPLE'; short values are hidden whole."""
    if len(text) < 3 * keep:
        return "*" * len(text)
    return text[:keep] + "*" * (len(text) - 2 * keep) + text[-keep:]


def mask_email(email: str) -> str:
    """'exporter@proj.iam.gserviceaccount.com' -> 'ex******@proj.iam.gserviceaccount.com'."""
    local, at, domain = email.partition("@")
    if not at:
        return mask_middle(email)
    return local[:2] + "*" * max(len(local) - 2, 3) + "@" + domain
