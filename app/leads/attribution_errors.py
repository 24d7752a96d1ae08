"""Errors of campaigns, partners, capture forms and public captures."""

from __future__ import annotations

from app.core.errors import Conflict, DomainError, Forbidden, NotFound


class CampaignNotFound(NotFound):
    """No campaign with that id in the caller's workspace."""

    code = "campaign_not_found"


class PartnerNotFound(NotFound):
    """No partner with that id in the caller's workspace."""

    code = "partner_not_found"


class FormNotFound(NotFound):
    """No enabled capture form with that id for the caller."""

    code = "form_not_found"


class DuplicateReferralCode(Conflict):
    """Another partner of the workspace has the referral code."""

    code = "duplicate_referral_code"
    title = "Duplicate referral code"


class DuplicateUtmCampaign(Conflict):
    """Another campaign of the workspace has the utm_campaign value."""

    code = "duplicate_utm_campaign"
    title = "Duplicate utm_campaign"


class OriginNotAllowed(Forbidden):
    """The request's Origin is not one of the capture form's allowed origins."""

    code = "origin_not_allowed"
    title = "Origin not allowed"


class RateLimited(DomainError):
    """Too many captures from one client address or to one form in this window."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"


class MalformedBody(DomainError):
    """A capture body that is not valid JSON."""

    code = "malformed_json"
    title = "Malformed JSON"
