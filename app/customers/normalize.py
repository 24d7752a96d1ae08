"""Normalized company domains of customers."""

from __future__ import annotations

import re

import idna

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_DOMAIN_LENGTH = 253

# Mailbox providers whose domain names no company. A customer made from a lead with
# such an address gets no domain. The list covers the largest providers only.
FREE_MAIL_DOMAINS = frozenset(
    {
        "aol.com",
        "gmail.com",
        "gmx.de",
        "gmx.net",
        "googlemail.com",
        "hotmail.com",
        "icloud.com",
        "live.com",
        "mail.ru",
        "me.com",
        "msn.com",
        "outlook.com",
        "proton.me",
        "protonmail.com",
        "qq.com",
        "web.de",
        "yahoo.com",
        "yandex.ru",
    }
)


class InvalidDomain(ValueError):
    """A string that is not a DNS domain name."""


def normalize_domain(value: str) -> str:
    """Lower-case, IDNA-encode and check a domain such as ``Bücher.example``.

    A scheme, path or trailing dot is rejected rather than stripped, so a client that
    sends a URL learns that the field takes a bare domain.
    """
    text = value.strip().lower()
    if not text:
        raise InvalidDomain("the domain is empty")
    try:
        encoded = idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError as error:
        raise InvalidDomain(
            f"{value!r} is not a domain name such as 'example.com': {error}"
        ) from error
    labels = encoded.split(".")
    if (
        len(encoded) > MAX_DOMAIN_LENGTH
        or len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise InvalidDomain(f"{value!r} is not a domain name such as 'example.com'")
    return encoded


def strip_www(domain: str) -> str:
    """Drop a leading ``www.`` label, so ``www.acme.com`` and ``acme.com`` match."""
    if domain.startswith("www.") and domain.count(".") >= 2:
        return domain[len("www.") :]
    return domain


def company_domain(email: str) -> str | None:
    """Return the domain of ``email`` when it names a company, else None."""
    _, _, domain = email.rpartition("@")
    try:
        normalized = normalize_domain(domain)
    except InvalidDomain:
        return None
    if normalized in FREE_MAIL_DOMAINS:
        return None
    return normalized
