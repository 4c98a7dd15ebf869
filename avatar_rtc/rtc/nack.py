"""NACK bookkeeping with retries and a bounded volume.

Sequence numbers here are *extended* (unwrapped to int). A gap is NACKed at once, then again
every ``retry_interval`` (at least 1.2x the measured NACK->retransmission round trip, late
retransmissions included) up to ``max_retries`` times, or until the packet arrives, the jitter
buffer gives up on it, or it is older than ``max_age`` (the jitter buffer's horizon: a later
retransmission is useless; so when the round trip exceeds it, nothing is retried).

Under overload the volume must shrink, not grow (aiortc's ``NackGenerator`` re-lists every
missing packet of its last 128 on each new gap; our old per-packet retries sent 5-20x more):

- a run of more than ``max_burst`` consecutive missing packets is not NACKed at all: that is
  how our own receive-buffer overflow (or an outage) looks, and re-sending it would add load
  where a keyframe repairs it at once; ``on_packet`` returns False and the caller sends a PLI
  and stops waiting for the packets below ``unasked_below``;
- except after an outage: when the packet that ends the run came after ``outage_pause``
  seconds without any (an overflowing socket buffer still hands over what it held first, so
  our own overload shows no such pause), the run's last ``outage_tail`` packets are NACKed
  once, whatever the budget: the sender's history may still hold them, and with them a
  keyframe the picture can resume from before the PLI's comes (Chromium does the same);
- or sooner, when the transport tells the outage is over before this stream's next packet
  comes (audio's packets are twice as frequent as video's frames): ``guess_outage_tail``
  estimates from the recent packet rate how many were sent meanwhile and tracks the last
  ``outage_tail`` of them as missing, to be NACKed at once. Nothing below them is waited for
  once the guess is confirmed (``take_confirmed_guess``: a retransmission of one came, or a
  fresh packet above the first). Sequence numbers guessed too high are ignored by the sender
  and arrive later as fresh packets (not counted as recovered); all of them too high (the
  sender sent fewer, e.g. it paused), the guess is undone at the first fresh packet; too
  low, that packet's gap is treated as the rest of the outage's run;
- every NACK entry (first or retry) spends a token; tokens come at ``budget`` per received
  packet (at most ``budget_burst`` saved up), so feedback stays a fraction of the packet rate.
  First NACKs go before retries;
- retries go out in batches (one RTCP packet per ``retry_interval`` at most), first NACKs with
  the packet that revealed the gap, like aiortc.

Echoes (``echo_after``, off by default; the receive pipeline sets 20 ms): where the measured
round trip is ``echo_min_rtt`` or more, a first NACK goes again ``echo_after`` later, once.
With independent loss a lost NACK or a lost retransmission then costs no second round trip,
which on a long one outlasts the playout delay (a freeze). A sender that ignores a repeat
within a round trip of its retransmission (libwebrtc does) still answers the echo of a lost
NACK. Never while the last second's loss exceeds ``echo_max_loss``, nor within
``echo_quiet`` seconds of a burst or of packets that came after ``echo_stall`` seconds without
any (a stalled event loop reads its socket late): there the loss is congestion or our own
overload, and more feedback would add to it.

At most ``max_missing`` entries are tracked (oldest dropped), so RTCP feedback stays small.

``sender_repairs`` turns False once ``deaf_after`` NACKed packets in a row never came (an
outage's tail aside: the sender's history may simply not reach back that far), e.g. a GStreamer
webrtcbin sender, which ignores NACKs. Waiting for those holes only lengthens the freeze before
the keyframe that does repair them; the caller stops waiting. Every gap is still NACKed once, so
a single retransmission (even a late one) turns it True again.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RETRY_RTTS", "NackTracker"]

RETRY_RTTS = 1.2  # a retry goes this many measured round trips after the NACK before it
RATE_SPAN = 1.0  # seconds over which the packet rate is measured (a keyframe's burst included)


@dataclass(slots=True)
class _Missing:
    noticed: float
    first_nack: float | None = None
    last_nack: float | None = None
    retries: int = 0  # NACKs sent, the first included
    deferred: bool = False  # once left out for want of budget
    tail: bool = False  # of an outage's tail (its loss says nothing about the sender)
    guessed: bool = False  # by guess_outage_tail: maybe never sent before the NACK


class NackTracker:
    def __init__(
        self,
        *,
        retry_interval: float = 0.02,
        max_retries: int = 10,
        max_missing: int = 256,
        max_gap: int = 1000,
        max_age: float | None = None,
        max_burst: int = 16,
        budget: float = 0.2,
        budget_burst: float = 32.0,
        outage_pause: float = 0.25,
        outage_tail: int = 128,
        deaf_after: int = 16,
        echo_after: float | None = None,
        echo_min_rtt: float = 0.05,
        echo_max_loss: float = 0.15,
        echo_quiet: float = 5.0,
        echo_stall: float = 0.1,
    ) -> None:
        self._retry_interval = retry_interval
        self._max_retries = max_retries
        self._max_missing = max_missing
        self._max_gap = max_gap
        self.max_age = max_age
        self._max_burst = max_burst
        self._budget = budget
        self._budget_burst = budget_burst
        self._outage_pause = outage_pause
        self._outage_tail = outage_tail
        self._deaf_after = deaf_after
        self._echo_after = echo_after
        self._echo_min_rtt = echo_min_rtt
        self._echo_max_loss = echo_max_loss
        self._echo_quiet = echo_quiet
        self._echo_stall = echo_stall
        # When a run too long to NACK ended, or packets came after a stall (our own overload,
        # an outage): no echoes for echo_quiet seconds.
        self._trouble = -1e9
        self._window_lost = 0  # packets found missing / received since the rate's mark
        self._window_received = 0
        self.loss_fraction = 0.0  # of the last RATE_SPAN (retransmissions not counted)
        self.echoes = 0
        self._unanswered = 0  # NACKed packets given up in a row that never came
        self._tokens = budget_burst
        self._last_arrival: float | None = None
        # Packet rate: (time, seq) where the current measurement started, and the last result
        self._rate_mark: tuple[float, int] | None = None
        self.packet_rate: float | None = None  # packets per second over the last RATE_SPAN
        self._after_guess = False  # until the first fresh packet after guess_outage_tail
        self._guess: tuple[int, int] | None = None  # (highest before, first asked) unconfirmed
        self._confirmed: int | None = None  # first asked of a confirmed guess, until taken
        # After a run not NACKed in full (on_packet returned False): below this, nothing of
        # it will be asked for.
        self.unasked_below: int | None = None
        self._last_batch = -1e9
        self._highest: int | None = None
        self._missing: dict[int, _Missing] = {}
        self._fresh = 0  # entries not NACKed yet (per-packet calls return at once without)
        # First-NACK times of packets given up on: one arriving late still measures the round
        # trip (when it exceeds the horizon, retries stop: they could not arrive in time).
        self._given_up: dict[int, float] = {}
        self.rtt: float | None = None  # smallest recent NACK -> retransmission delay
        self.recovered = 0
        # Retransmissions that came after their hole was given up (the jitter buffer went on
        # without them): received, so not lost, but too late to be of use.
        self.late_repairs = 0
        self.bursts = 0  # gaps not NACKed: too long (a PLI is asked for instead)
        self.tail_guesses = 0  # outages whose tail guess_outage_tail asked for
        self.throttled = 0  # missing packets given up without a single NACK (budget)

    @property
    def missing_count(self) -> int:
        return len(self._missing)

    @property
    def awaited(self) -> int:
        """Packets missing and still asked for: their fate is not known yet (a guessed outage
        tail aside: those may never have been sent)."""
        return sum(1 for m in self._missing.values() if not m.guessed)

    @property
    def sender_repairs(self) -> bool:
        """False while the sender answers no NACK (see the module docstring)."""
        return self._unanswered < self._deaf_after

    def on_packet(self, seq: int, now: float, *, retransmission: bool = False) -> bool:
        """Record a received packet; False when its gap is not worth NACKing (ask a PLI).

        ``retransmission``: it came over RTX (tells a guessed sequence number's retransmission
        from its first transmission)."""
        if self._tokens < self._budget_burst:  # an outage's tail grant stays until spent
            self._tokens = min(self._budget_burst, self._tokens + self._budget)
        paused = self.silent(now)
        if self._last_arrival is not None and now - self._last_arrival >= self._echo_stall:
            self._trouble = now
        self._last_arrival = now
        if self._highest is None:
            self._highest = seq
            self._rate_mark = (now, seq)
            return True
        if not retransmission:
            if self._after_guess:
                self._after_guess = False
                paused = True  # (if the guess was too low: the rest of the outage's run)
                guess, self._guess = self._guess, None
                if guess is not None and seq < guess[1]:
                    self._undo_guess(guess[0])
                elif guess is not None:
                    self._confirmed = guess[1]
            self._measure_rate(seq, now)
        if seq > self._highest:
            gap = seq - self._highest - 1
            self._highest = seq
            if gap > self._max_burst:
                self.bursts += 1
                self._trouble = now
                if gap > self._max_gap:
                    self._drop(list(self._missing))
                tail = min(gap, self._outage_tail) if paused else 0
                self._track(seq - tail, seq, now, tail=True)
                self._tokens = max(self._tokens, float(tail))  # asked for once, in full
                self.unasked_below = seq - tail
                return False
            self._track(seq - gap, seq, now)
        else:
            entry = self._missing.pop(seq, None)
            if entry is not None and entry.first_nack is None:
                self._fresh -= 1
            elif entry is not None and entry.guessed and not retransmission:
                pass  # sent after the NACK that guessed it: nothing was repaired
            elif entry is not None and entry.first_nack is not None:
                if entry.guessed and self._guess is not None:
                    self._confirmed, self._guess = self._guess[1], None  # the sender had it
                self.recovered += 1
                self._unanswered = 0
                self._rtt_sample(now - entry.first_nack)
            elif seq in self._given_up:
                if retransmission:
                    self.late_repairs += 1
                self._unanswered = 0
                self._rtt_sample(now - self._given_up.pop(seq))
        return True

    def silent(self, now: float) -> bool:
        """No packet for ``outage_pause`` seconds or more (and some before)."""
        return self._last_arrival is not None and now - self._last_arrival >= self._outage_pause

    def guess_outage_tail(self, now: float) -> bool:
        """The path is back (the transport received something) while this stream has been
        silent for ``outage_pause`` or more: track the last ``outage_tail`` of the packets the
        recent rate says were sent meanwhile as missing (``due`` NACKs them at once, past the
        budget) and give up on the rest (``unasked_below``). False when there is nothing to
        guess from (no rate yet, or the stream was not silent)."""
        last, rate, highest = self._last_arrival, self.packet_rate, self._highest
        if last is None or rate is None or highest is None or not self.silent(now):
            return False
        top = highest + round(rate * (now - last))
        if top <= highest:
            return False
        start = max(highest + 1, top + 1 - self._outage_tail)
        self.bursts += 1
        self.tail_guesses += 1
        self._track(start, top + 1, now, tail=True, guessed=True)
        self._tokens = max(self._tokens, float(top + 1 - start))
        self._guess = (highest, start)
        self._highest = top
        self._last_arrival = now  # the retransmissions that follow are not another outage
        self._after_guess = True
        return True

    def take_confirmed_guess(self) -> int | None:
        """The first sequence number a confirmed guess asked for (nothing below it will be
        asked for), once; None otherwise."""
        confirmed, self._confirmed = self._confirmed, None
        return confirmed

    def _undo_guess(self, highest: int) -> None:
        """The sender never got as far as the guess: forget it."""
        for seq in [s for s, m in self._missing.items() if m.guessed]:
            if self._missing.pop(seq).first_nack is None:
                self._fresh -= 1
        self._highest = highest

    def _measure_rate(self, seq: int, now: float) -> None:
        self._window_received += 1
        mark = self._rate_mark
        if mark is None:
            self._rate_mark = (now, seq)
        elif seq > mark[1] and now - mark[0] >= RATE_SPAN:
            self.packet_rate = (seq - mark[1]) / (now - mark[0])
            self._rate_mark = (now, seq)
            seen = self._window_lost + self._window_received
            self.loss_fraction = self._window_lost / seen if seen else 0.0
            self._window_lost = self._window_received = 0

    def _track(
        self, start: int, end: int, now: float, *, tail: bool = False, guessed: bool = False
    ) -> None:
        """Packets ``start``..``end - 1`` are missing: track them (at most ``max_missing``)."""
        for s in range(start, end):
            self._missing[s] = _Missing(now, tail=tail, guessed=guessed)
        self._fresh += end - start
        self._window_lost += end - start
        if len(self._missing) > self._max_missing:
            self._drop(sorted(self._missing)[: len(self._missing) - self._max_missing])

    def _rtt_sample(self, sample: float) -> None:
        self.rtt = sample if self.rtt is None else min(sample, 0.9 * self.rtt + 0.1 * sample)

    def due(self, now: float, *, retries: bool = True) -> list[int]:
        """Sequence numbers to NACK now (``retries=False``: first NACKs only), in order."""
        if not self._missing or not (retries or self._fresh):
            return []
        if self.max_age is not None:
            self._drop([s for s, m in self._missing.items() if now - m.noticed > self.max_age])
        interval = self._retry_interval
        if self.rtt is not None:
            interval = max(interval, RETRY_RTTS * self.rtt)
        retrying = retries and now - self._last_batch >= interval
        first: list[int] = []
        echo: list[int] = []
        again: list[int] = []
        exhausted: list[int] = []
        echoing = self._echoing(now)
        for seq, m in self._missing.items():
            if m.last_nack is None:
                first.append(seq)
            elif (
                echoing
                and m.retries == 1
                and not m.tail
                and m.first_nack is not None
                and now - m.first_nack >= self._echo_after  # type: ignore[operator]
            ):
                echo.append(seq)
            elif not retrying or now - m.last_nack < interval:
                continue
            elif m.retries >= self._max_retries:
                exhausted.append(seq)
            else:
                again.append(seq)
        self._drop(exhausted)
        wanted = first + echo + again
        out = wanted[: int(self._tokens)]
        for seq in wanted[len(out) :]:
            self._missing[seq].deferred = True
        if not out:
            return []
        self._tokens -= len(out)
        if retrying and again:
            self._last_batch = now
        self.echoes += len(set(out).intersection(echo))
        for seq in out:
            m = self._missing[seq]
            if m.first_nack is None:
                m.first_nack = now
                self._fresh -= 1
            m.last_nack = now
            m.retries += 1
        return sorted(out)

    def _echoing(self, now: float) -> bool:
        """Echo first NACKs now? Only where a second round trip is long (a retry would come
        too late) and the loss looks like the network's: not high, no burst or stall lately."""
        return (
            self._echo_after is not None
            and self.rtt is not None
            and self.rtt >= self._echo_min_rtt
            and self.loss_fraction <= self._echo_max_loss
            and now - self._trouble >= self._echo_quiet
        )

    def forget_before(self, seq: int) -> None:
        """Stop asking for packets older than ``seq`` (the jitter buffer gave up on them)."""
        self._drop([s for s in self._missing if s < seq])

    def reset(self) -> None:
        self._highest = None
        self._rate_mark = None
        self._after_guess = False
        self._guess = self._confirmed = None
        self._missing.clear()
        self._fresh = 0
        self._given_up.clear()

    def _drop(self, seqs: list[int]) -> None:
        for s in seqs:
            m = self._missing.pop(s)
            if m.first_nack is not None:
                if not m.guessed:  # (else a fresh packet could pass for a late answer)
                    self._given_up[s] = m.first_nack
                if not m.tail:
                    self._unanswered += 1
                continue
            self._fresh -= 1
            if m.deferred:
                self.throttled += 1
        while len(self._given_up) > self._max_missing:
            del self._given_up[next(iter(self._given_up))]
