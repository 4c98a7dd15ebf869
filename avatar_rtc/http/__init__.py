"""The one HTTP layer under the Control API client (``api``) and the WHEP client (``rtc``).

- :mod:`.transport`: :class:`~.transport.HttpTransport` (session, timeout, redirect hook,
  error mapping).
- :mod:`.retry`: :class:`~.retry.RetryPolicy`, :func:`~.retry.call_with_retry`,
  :func:`~.retry.parse_retry_after`.
"""
