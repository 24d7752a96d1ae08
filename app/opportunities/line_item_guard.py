"""The rule that an opportunity with line items takes its amount from them.

It lives apart from the line item service so that the opportunity service can call it
without importing that service, which imports the opportunity service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Opportunity
from app.opportunities.catalog_errors import AmountFromLineItems
from app.opportunities.line_item_repository import LineItemRepository

_DERIVED = ("amount", "currency")


async def check_amount_settable(
    session: AsyncSession, opportunity: Opportunity, changes: Mapping[str, Any]
) -> None:
    """Raise ``AmountFromLineItems`` (409) when a PATCH changes a derived field.

    While the opportunity has line items, its amount is their total and its currency
    is the one they are priced in. The caller holds the opportunity's row lock, which
    every change of its lines takes too.
    """
    changed = [
        name
        for name in _DERIVED
        if name in changes and changes[name] != getattr(opportunity, name)
    ]
    if not changed:
        return
    if not await LineItemRepository.from_session(session).any(opportunity.id):
        return
    encoded = ids.encode("opportunity", opportunity.id)
    raise AmountFromLineItems(
        f"Opportunity {encoded} has line items, so its {' and '.join(changed)} "
        "come from them and cannot be set directly. Change the line items at "
        f"/v1/opportunities/{encoded}/line-items, or remove them all to set the "
        "amount by hand.",
        fields=changed,
    )
