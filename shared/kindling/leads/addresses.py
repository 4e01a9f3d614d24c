"""Email addresses as identities: one normal form, so that one person is one lead."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


def normalize_email(raw: object) -> str | None:
    """The normal form of a syntactically valid address, or None.

    Lower-cased whole: mailbox providers treat the local part case-insensitively in
    practice, and two leads for ``Ann@x.com`` and ``ann@x.com`` would be worse than the
    rare provider that does not. Deliverability is SES's job (bounces), not a DNS
    lookup on the hot path.
    """
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError:
        return None
    return result.normalized.lower()
