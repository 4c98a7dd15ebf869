"""Feed the avatar's video and audio to PyTorch: batched tensors into a model, on the CPU.

Run with no arguments: starts the embedded emulator, makes the avatar speak, and for 6 seconds
stacks video frames into ``(8, 3, 224, 224)`` float batches for a small model (how open the
mouth is, per frame) while the speech arrives as ``(1, 8000)`` tensors of 16 kHz audio (its
loudness), prints what each batch gave and exits. ``--service`` uses the real service instead
(``AVATAR_KS``, ``AVATAR_ID``, ...).

The model runs in a worker thread, so the event loop keeps receiving meanwhile. Needs PyTorch
(any build: this runs on the CPU): ``pip install torch``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from avatar_rtc import (
    AudioFormat,
    AudioStream,
    AvatarSession,
    VideoFormat,
    VideoStream,
)

from _target import target  # the real service, or an emulator started here

try:
    import torch
except ImportError:
    sys.exit(
        "torch_tensors.py needs PyTorch; a CPU build is enough: pip install torch "
        "--index-url https://download.pytorch.org/whl/cpu"
    )

SIZE = (224, 224)  # what a typical vision model takes
BATCH = 8
SAMPLE_RATE = 16000


class MouthModel(torch.nn.Module):
    """A stand-in for a real model: how dark the mouth region is, 0 (closed) .. 1 (open)."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        w, h = size
        self.rows = slice(int(h * 0.60), int(h * 0.76))
        self.cols = slice(int(w * 0.40), int(w * 0.60))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) in 0..1 -> (N,)
        patch = batch[:, :, self.rows, self.cols]
        dark = (patch.amax(dim=1) < 90 / 255).float().mean(dim=(1, 2))
        return (dark * 1.5).clamp(max=1.0)


def to_batch(frames: list[torch.Tensor]) -> torch.Tensor:
    """HxWx3 uint8 frames -> one (N, 3, H, W) float tensor in 0..1, what models take."""
    return torch.stack(frames).permute(0, 3, 1, 2).float().div(255)


def span(values: list[float], digits: int) -> str:
    return f"{min(values):.{digits}f}..{max(values):.{digits}f}"


async def video_batches(video: VideoStream, model: MouthModel, deadline: float) -> list[float]:
    scores: list[float] = []
    frames: list[torch.Tensor] = []
    async for frame in video:
        # from_numpy shares the frame's memory; stacking the batch copies it.
        frames.append(torch.from_numpy(frame.array))
        if len(frames) == BATCH:
            batch = to_batch(frames)
            frames.clear()
            with torch.inference_mode():
                out = await asyncio.to_thread(model, batch)
            scores += out.tolist()
            print(f"video {tuple(batch.shape)} {batch.dtype} -> mouth {out.max().item():.2f} max")
        if time.monotonic() >= deadline:
            break
    return scores


async def audio_chunks(audio: AudioStream, deadline: float) -> list[float]:
    levels: list[float] = []
    chunk: list[torch.Tensor] = []
    async for frame in audio:  # (320, 1) float32: 20 ms of mono
        chunk.append(torch.from_numpy(frame.data).T)
        if len(chunk) == 25:  # 0.5 s
            samples = torch.cat(chunk, dim=1)
            chunk.clear()
            rms = samples.square().mean().sqrt().item()
            levels.append(rms)
            print(f"audio {tuple(samples.shape)} {samples.dtype} -> rms {rms:.3f}")
        if time.monotonic() >= deadline:
            break
    return levels


async def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)  # small tensors: one thread, and the cores stay for decoding
    model = MouthModel(SIZE).eval()
    async with target(args.service) as options, AvatarSession(options) as avatar:
        await avatar.wait_first_frame()
        mono = AudioFormat(sample_rate=SAMPLE_RATE, channels=1, dtype="float32")
        # `async with`: the streams close (and stop decoding for them) after their `break`.
        async with (
            avatar.video(VideoFormat("rgb24", size=SIZE), policy="all", capacity=50) as video,
            avatar.audio(mono) as audio,
        ):
            await avatar.say(args.say)
            deadline = time.monotonic() + args.duration
            scores, levels = await asyncio.gather(
                video_batches(video, model, deadline), audio_chunks(audio, deadline)
            )
        print(f"{len(scores)} frames in batches of {BATCH}: mouth {span(scores, 2)}")
        print(f"{len(levels)} audio chunks of 0.5 s: rms {span(levels, 3)}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds to run")
    parser.add_argument("--say", default="Hello PyTorch. My frames and my voice are tensors now.")
    parser.add_argument("--service", action="store_true", help="use the real service (env)")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
