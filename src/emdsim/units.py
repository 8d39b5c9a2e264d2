"""Time units: the one place that says how long a year and a month are.

Rates in the configuration are per day (``*_rate_per_day``) or per year (``*_per_year``), durations
in days or years; outputs report months.  A year is the Julian year of 365.25 days and a month a
twelfth of it (30.4375 days), as in survival reporting.
"""

from __future__ import annotations

__all__ = ["DAYS_PER_YEAR", "DAYS_PER_MONTH"]

#: days in a (Julian) year
DAYS_PER_YEAR = 365.25
#: days in a month: a twelfth of a year (30.4375)
DAYS_PER_MONTH = DAYS_PER_YEAR / 12
