"""A plain synchronous script: no asyncio, no ``await``.

Run with no arguments: starts the embedded emulator (in a background thread), connects,
makes the avatar speak, reads video frames and 16 kHz audio with ordinary ``for`` loops,
waits until the avatar is quiet again, prints the session's stats and exits.
``--service`` uses the real service instead (``AVATAR_KS``, ``AVATAR_ID``, ...).
"""

from __future__ import annotations

import argparse

import numpy as np

from avatar_rtc import AudioFormat, SyncAvatarSession, VideoFormat

from _target import sync_target  # the real service, or an emulator started here


def main(args: argparse.Namespace) -> None:
    with sync_target(args.service) as options, SyncAvatarSession(options) as avatar:
        first = avatar.wait_first_frame()
        print(f"connected: session {avatar.session_id}, first frame {first.width}x{first.height}")
        print(
            "time to first frame:",
            {k: v and round(v, 3) for k, v in avatar.timings.as_dict().items()},
        )

        # 25 frames, resized for a model; `break`/the end of the loop stops the stream.
        for n, frame in enumerate(avatar.iter_video(VideoFormat(size=(160, 160)))):
            if n == 0:
                print(f"video frame: {frame.array.shape} {frame.array.dtype}")
            if n >= 24:
                break

        avatar.say(args.say)
        # One second of 16 kHz mono speech, 20 ms per frame.
        chunks = []
        for audio in avatar.iter_audio(AudioFormat(sample_rate=16000, channels=1, frame_ms=20)):
            chunks.append(audio.data)
            if len(chunks) == 50:
                break
        pcm = np.concatenate(chunks)
        rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
        level = 20 * np.log10(max(rms, 1.0) / 32768)
        print(f"audio: {pcm.shape[0]} samples at 16 kHz, level {level:.1f} dBFS")

        avatar.wait_idle(timeout=30)
        stats = avatar.stats()
        print(
            f"idle again; utterances: {stats.utterances}, video frames: {stats.video.frames}, "
            f"audio packets: {stats.audio.packets}, lost: {stats.video.lost + stats.audio.lost}"
        )
    print("session ended")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--say", default="Hello from a plain synchronous Python script.")
    parser.add_argument("--service", action="store_true", help="use the real service (env)")
    return parser.parse_args()


if __name__ == "__main__":
    main(parse_args())
