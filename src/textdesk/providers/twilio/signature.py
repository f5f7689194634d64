"""Twilio's webhook signature (``X-Twilio-Signature``).

Per https://www.twilio.com/docs/usage/webhooks/webhooks-security: take the full URL Twilio
called (scheme, host, path and query), append every POST parameter sorted by name as name
followed by value, HMAC-SHA1 the string with the account's Auth Token and base64 the digest.

Two quirks handled here:

* Twilio is inconsistent about the port: a request to ``https://host/x`` may have been signed as
  ``https://host:443/x`` and vice versa, so both spellings are tried (Twilio's own validators do
  the same).
* Webhooks with a JSON body carry ``bodySHA256=<hex sha256 of the body>`` in the query instead of
  form parameters; the body hash is checked and only the URL is signed.

Webhook Rules signed with a SharedKey (``X-Twilio-Webhooks-Signature-Settings``) are not
supported: textdesk only holds the Auth Token, so those requests fail verification.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit, urlunsplit

_DEFAULT_PORTS = {"https": 443, "http": 80}


def compute(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The signature Twilio sends for a POST to ``url`` with these form parameters."""
    data = url + "".join(name + value for name, value in sorted(set(params)))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_variants(url: str) -> list[str]:
    """``url`` as given, and with its port toggled: removed if present, the scheme's default
    added if absent."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a malformed port: only the URL as given can match
        return [url]
    if port is not None:
        host = parts.netloc.rsplit(":", 1)[0]
    else:
        default = _DEFAULT_PORTS.get(parts.scheme.lower())
        if default is None:
            return [url]
        host = f"{parts.netloc}:{default}"
    return [url, urlunsplit(parts._replace(netloc=host))]


def is_valid(
    auth_token: str, url: str, params: Iterable[tuple[str, str]], body: bytes, signature: str
) -> bool:
    """Whether ``signature`` is Twilio's for this request. Constant-time comparisons."""
    body_hash = parse_qs(urlsplit(url).query).get("bodySHA256")
    if body_hash:
        expected_hash = hashlib.sha256(body).hexdigest()
        if not hmac.compare_digest(expected_hash, body_hash[0]):
            return False
        params = ()
    params = list(params)
    given = signature.encode()
    matched = False
    for candidate in url_variants(url):
        # Evaluate every variant so the timing doesn't tell which one matched.
        matched |= hmac.compare_digest(compute(auth_token, candidate, params).encode(), given)
    return matched
