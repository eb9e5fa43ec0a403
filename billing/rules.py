"""Permission rules shared by the billing models (core/policy.py reads them)."""

from core.policy import VIEW, Rules

_READ = frozenset({VIEW})


def read_only_rules(owner: str) -> Rules:
    """Rows the panel writes and nobody edits: read by their owner (and the owner's
    reseller), support, billing staff and administrators."""
    return Rules(owner=owner, owner_may=_READ, billing_may=_READ, admin_may=_READ)


# Lines, payments and dunning steps of an invoice: read by whoever reads the invoice (its
# customer and the reseller that issued it, not the customer's reseller of the day: a
# customer moved to another reseller does not show that reseller the first one's invoices).
INVOICE_PART_RULES = Rules(
    owner="invoice__customer",
    owner_may=_READ,
    billing_may=_READ,
    admin_may=_READ,
    reseller_reaches_customers=False,
    issuer="invoice__issuer",
    issuer_may=_READ,
)

# Panel-wide records without an owner: billing staff and administrators read them.
STAFF_RECORDS = Rules(owner=None, support_may=frozenset(), billing_may=_READ, admin_may=_READ)
