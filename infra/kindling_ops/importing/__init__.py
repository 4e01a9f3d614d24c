"""Reading the contacts, unsubscribes and bounces a company brings from another tool.

``kindling import FORMAT FILE`` reads with one of these and posts the rows to the admin API.
"""

from kindling_ops.importing.formats import (
    ImportFileError,
    load_mapping,
    read_csv,
    read_hubspot,
    read_hubspot_suppressions,
    read_mautic,
    read_mautic_do_not_contact,
    read_pinpoint,
)
from kindling_ops.importing.rows import ContactRow, Parsed, Rejected, SuppressionRow

__all__ = [
    "ContactRow",
    "ImportFileError",
    "Parsed",
    "Rejected",
    "SuppressionRow",
    "load_mapping",
    "read_csv",
    "read_hubspot",
    "read_hubspot_suppressions",
    "read_mautic",
    "read_mautic_do_not_contact",
    "read_pinpoint",
]
