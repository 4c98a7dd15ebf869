"""Fan-out mode of the emulator: a load generator that feeds dozens of sessions from one process.

``Emulator(fanout=True)`` (``avatar-rtc emulator --fanout``): every session's viewers get one
shared stream, the synthetic avatar encoded and packetized once (:mod:`.loop`), sent by one
clock task (:class:`FanoutSource`) with a header and an SRTP protect per packet
(:class:`~.outlet.Outlet`). Its ``stats`` (CPU seconds of the sends, packets) and ``epoch``
(monotonic time of RTP time 0) are what benchmarks read.
"""

from avatar_rtc.emulator.fanout.loop import EncodedLoop, encoded_loop
from avatar_rtc.emulator.fanout.media import FanoutMedia
from avatar_rtc.emulator.fanout.source import FanoutSource, FanoutStats

__all__ = ["EncodedLoop", "FanoutMedia", "FanoutSource", "FanoutStats", "encoded_loop"]
