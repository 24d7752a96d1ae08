"""A path convertor for lead ids that leaves the fixed path /v1/leads/batch alone.

Without it ``GET /v1/leads/{lead_id}`` and ``PATCH`` also match ``/v1/leads/batch``, so
a 405 there would advertise GET and PATCH in ``Allow``.
"""

from __future__ import annotations

from starlette.convertors import StringConvertor, register_url_convertor

# Path segments under /v1/leads that name an operation rather than a lead.
FIXED_SEGMENTS = ("batch",)


class LeadIdConvertor(StringConvertor):
    regex = "(?!(?:" + "|".join(FIXED_SEGMENTS) + ")(?:/|$))[^/]+"


register_url_convertor("lead_id", LeadIdConvertor())
