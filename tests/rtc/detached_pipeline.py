"""A video ReceivePipeline on an aiortc receiver that is never started, fed RTP by hand.

The packets go to the receiver's RTP handler directly, as the DTLS transport would hand them
over; ``_learn`` stands in for what the wrapped ``receive`` learns from the negotiated codecs.
"""

from __future__ import annotations

from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport, RTCRtpReceiver
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
)
from aiortc.rtp import RtpPacket

from avatar_rtc.rtc.encoded_frame import MediaKind
from avatar_rtc.rtc.receiver import ReceivePipeline

PT = 102
SSRC = 1234
Packet = tuple[int, int, bool, bytes]  # seq, timestamp, marker, payload


def h264_codec(*, nack: bool = False) -> RTCRtpCodecParameters:
    """H264 (packetization-mode 1) on ``PT``; ``nack``: generic NACK and PLI negotiated."""
    feedback = [RTCRtcpFeedback(type="nack"), RTCRtcpFeedback(type="nack", parameter="pli")]
    return RTCRtpCodecParameters(
        mimeType="video/H264",
        clockRate=90000,
        payloadType=PT,
        parameters={"packetization-mode": "1"},
        rtcpFeedback=feedback if nack else [],
    )


def opus_codec() -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2,
                                 payloadType=PT)  # fmt: skip


def detached_pipeline(codec: RTCRtpCodecParameters) -> tuple[RTCRtpReceiver, ReceivePipeline]:
    """The receiver, and its pipeline knowing ``codec`` (audio or video, as the codec)."""
    dtls = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    kind: MediaKind = "audio" if codec.mimeType.startswith("audio/") else "video"
    receiver = RTCRtpReceiver(kind, dtls)
    pipeline = ReceivePipeline(kind)
    pipeline.attach(receiver)
    pipeline._learn(RTCRtpReceiveParameters(codecs=[codec]))
    return receiver, pipeline


async def feed_rtp(receiver: RTCRtpReceiver, packets: list[Packet], ssrc: int = SSRC) -> None:
    """Hand ``packets`` to the receiver's RTP handler, in order."""
    for seq, ts, marker, payload in packets:
        packet = RtpPacket(payload_type=PT, marker=int(marker), sequence_number=seq & 0xFFFF,
                           timestamp=ts, ssrc=ssrc, payload=payload)  # fmt: skip
        await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
