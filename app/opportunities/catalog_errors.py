"""Errors of products, opportunity line items and proposals."""

from __future__ import annotations

from app.core.errors import Conflict, NotFound


class ProductNotFound(NotFound):
    """No product with that id in the caller's workspace."""

    code = "product_not_found"


class SkuTaken(Conflict):
    """Another product of the workspace has that SKU."""

    code = "sku_taken"
    title = "SKU already used"


class ProductUnavailable(Conflict):
    """The product is archived, or has no price in the opportunity's currency."""

    code = "product_unavailable"
    title = "Product cannot be sold here"


class LineItemNotFound(NotFound):
    """No line item with that id on the opportunity."""

    code = "line_item_not_found"


class LineItemsLocked(Conflict):
    """The opportunity is closed, so its line items cannot change."""

    code = "line_items_locked"
    title = "Line items cannot change"


class AmountFromLineItems(Conflict):
    """The opportunity's amount is the total of its line items and is not set directly."""

    code = "amount_from_line_items"
    title = "Amount comes from line items"


class ProposalNotFound(NotFound):
    """No proposal with that id in the caller's workspace."""

    code = "proposal_not_found"


class InvalidProposalTransition(Conflict):
    """The proposal's status does not allow the requested change."""

    code = "invalid_transition"
    title = "Invalid status transition"


class ProposalExpired(Conflict):
    """The proposal's validity date has passed, so it can no longer be accepted."""

    code = "proposal_expired"
    title = "Proposal expired"
