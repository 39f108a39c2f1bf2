"""Phone-number normalisation and masking.

Numbers are personal data: they are kept exact in events (operators must be able to act on them)
but masked wherever they are logged.
"""

import re

_SEPARATORS = re.compile(r"[\s\-().]")


def normalise_number(raw: str) -> str:
    """Return the number in international digits: separators dropped, a leading ``+`` or ``00`` removed.

    Numbers are not rejected for being short or unusual (NXCLOUD may send short codes or
    national formats); anything that is not digits after normalisation is kept as given, stripped,
    so that nothing a real push could carry is lost.
    """
    s = _SEPARATORS.sub("", raw.strip())
    if s.startswith("+"):
        s = s[1:]
    elif s.startswith("00") and len(s) > 2:
        s = s[2:]
    return s


def mask_number(number: str | None) -> str | None:
    """Mask all but the last four characters: ``85299999999`` -> ``*******9999``."""
    if number is None:
        return None
    keep = 4 if len(number) > 6 else max(len(number) // 3, 0)
    return "*" * (len(number) - keep) + number[len(number) - keep :]
