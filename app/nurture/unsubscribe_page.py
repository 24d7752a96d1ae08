"""The small HTML pages behind the unsubscribe link of every marketing email.

Opening the link shows a page with one button. Only the button's POST, or the
RFC 8058 one-click POST that mail clients send, unsubscribes: mail scanners that
fetch every link in a message must not unsubscribe the lead. Every value on a page
is HTML-escaped, and the pages load nothing from elsewhere.
"""

from __future__ import annotations

from html import escape

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto;
  padding: 0 1rem; line-height: 1.5; color: #222; }}
button {{ font-size: 1rem; padding: 0.5rem 1.25rem; cursor: pointer; }}
</style>
</head>
<body>
<h1>{title}</h1>
{content}
</body>
</html>
"""


def mask_email(email: str) -> str:
    """Show enough of an address to recognise it: ``a***@example.com``."""
    local, _, domain = email.rpartition("@")
    if not local:
        return "***"
    return f"{local[0]}***@{domain}"


def confirm_page(email: str, action: str, *, already: bool) -> str:
    """Render the page a GET of the link shows: a button, or the current state."""
    address = escape(mask_email(email))
    if already:
        content = (
            f"<p>{address} is unsubscribed and receives no more of these emails.</p>"
        )
        return _PAGE.format(title="You are unsubscribed", content=content)
    content = (
        f"<p>Stop sending marketing emails to {address}?</p>\n"
        f'<form method="post" action="{escape(action, quote=True)}">\n'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">\n'
        '<button type="submit">Unsubscribe</button>\n'
        "</form>"
    )
    return _PAGE.format(title="Unsubscribe", content=content)


def done_page(email: str) -> str:
    """Render the page a browser gets after the button's POST."""
    content = (
        f"<p>{escape(mask_email(email))} is unsubscribed and receives no more of "
        "these emails.</p>"
    )
    return _PAGE.format(title="You are unsubscribed", content=content)
