"""Shared pytest configuration."""

from __future__ import annotations

from avatar_rtc.redact import install_log_redaction

install_log_redaction()
