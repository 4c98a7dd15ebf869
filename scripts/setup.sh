#!/usr/bin/env bash
# Sets a fresh Debian machine up for avatar-rtc.
#   bash scripts/setup.sh         the package and its runtime deps (pip)
#   bash scripts/setup.sh --dev   + test deps: pip dev extras and the real peers the
#                                 interop tests use (coturn, GStreamer, Chromium, ffmpeg...)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
APT_RUNTIME=(ffmpeg espeak-ng)
APT_DEV=(
  coturn openssl iproute2 nftables util-linux procps
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice
  python3-gi python3-gst-1.0 gir1.2-gst-plugins-bad-1.0 gir1.2-gst-plugins-base-1.0
  chromium
)

want=("${APT_RUNTIME[@]}")
extras=""
if [[ "${1:-}" == "--dev" ]]; then
  want+=("${APT_DEV[@]}")
  extras="[dev,qa,ray]"  # ray: the fleet's Ray engine test (about 6 s more)
fi

missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if command -v apt-get >/dev/null; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: apt-get not found; install by hand: ${missing[*]}" >&2
  fi
fi

"$PY" -m pip install -q --disable-pip-version-check -e ".${extras}"

if [[ "${1:-}" == "--dev" ]]; then
  # PyTorch for examples/torch_tensors.py, the CPU build only: taken from pip's local wheels
  # (find-links), never from the index, whose Linux wheels are CUDA builds of several GB.
  TORCH_CPU=2.13.0
  if "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps "torch==$TORCH_CPU"
  then
    "$PY" -m pip install -q --disable-pip-version-check "torch==$TORCH_CPU"  # its dependencies
  else
    echo "setup: no local CPU build of torch $TORCH_CPU for $("$PY" -V): not installed" >&2
  fi
fi
