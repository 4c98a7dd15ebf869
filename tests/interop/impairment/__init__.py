"""The impairment matrix (issue 10): our receiver vs headless Chromium under loss, delay,
rate caps, outages, a TURN restart and a killed sender, in private network namespaces."""
