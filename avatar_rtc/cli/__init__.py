"""The ``avatar-rtc`` command line (entry point: :func:`avatar_rtc.cli.__main__.run`, which
runs :func:`avatar_rtc.cli.main.main`).

Nothing is imported here so that ``python -m avatar_rtc.cli.main`` runs cleanly.
"""
