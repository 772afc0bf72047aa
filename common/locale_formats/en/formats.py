"""Django's own date formats in PyROS's style (common/formats.py): what Django formats by itself (the
backoffice's lists and forms, a datetime printed without a filter) reads '2026-12-04 23:41:07 UTC'
instead of 'Dec. 4, 2026, 11:41 p.m.'. Active with settings.FORMAT_MODULE_PATH = ["common.locale_formats"]
(English, the only language the site speaks; en-gb falls back to this module). Input formats stay Django's."""

DATE_FORMAT = "Y-m-d"
TIME_FORMAT = r"H:i:s \U\T\C"
DATETIME_FORMAT = r"Y-m-d H:i:s \U\T\C"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = r"Y-m-d H:i \U\T\C"
YEAR_MONTH_FORMAT = "Y-m"
MONTH_DAY_FORMAT = "m-d"
FIRST_DAY_OF_WEEK = 1  # Monday (ISO 8601)
