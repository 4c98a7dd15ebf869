"""The ``avatar-rtc`` command line."""
