"""Headless Chromium (real libwebrtc) as a WHEP receiver that samples W3C video stats."""
