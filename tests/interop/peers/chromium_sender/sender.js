// WHEP sender page: long-polls the relay for offers and answers them with a canvas video
// track and a WebAudio oscillator, sending only the codec the relay asks for.
"use strict";

const GATHER_TIMEOUT_MS = 5000;
const peers = new Map(); // session id -> RTCPeerConnection

function log(...parts) {
  const text = parts.map(String).join(" ");
  console.log(text);
  // Headless Chromium's console is hard to see from the tests: mirror it to the relay.
  fetch("/log", { method: "POST", body: text }).catch(() => {});
}

// --- media sources (shared by all sessions) -------------------------------------------------
const canvas = document.getElementById("src");
const ctx2d = canvas.getContext("2d");
let tick = 0;
function draw() {
  tick += 1;
  const w = canvas.width;
  const h = canvas.height;
  const grad = ctx2d.createLinearGradient(0, 0, w, h);
  grad.addColorStop(0, "#203060");
  grad.addColorStop(1, "#60a0c0");
  ctx2d.fillStyle = grad;
  ctx2d.fillRect(0, 0, w, h);
  ctx2d.fillStyle = "#f0f040"; // something moving, so every frame differs
  const x = (tick * 7) % w;
  const y = h / 2 + Math.sin(tick / 10) * (h / 4);
  ctx2d.beginPath();
  ctx2d.arc(x, y, 40, 0, 2 * Math.PI);
  ctx2d.fill();
  // The coloured square the receiver probes, drawn last: the moving circle passes over its
  // place, and a probe that lands on the circle reads yellow.
  ctx2d.fillStyle = "#e03020";
  ctx2d.fillRect(40, 40, 120, 120);
  ctx2d.fillStyle = "#ffffff";
  ctx2d.font = "32px sans-serif";
  ctx2d.fillText(`frame ${tick}`, 200, 440);
}
draw();
// setInterval rather than requestAnimationFrame: rAF may be throttled in headless mode.
setInterval(draw, 33);
const videoStream = canvas.captureStream(30);

const audioCtx = new AudioContext({ sampleRate: 48000 });
const osc = audioCtx.createOscillator();
osc.type = "sine";
osc.frequency.value = 440;
const gain = audioCtx.createGain();
gain.gain.value = 0.3;
const audioDest = audioCtx.createMediaStreamDestination();
osc.connect(gain).connect(audioDest);
osc.start();
audioCtx.resume().catch((e) => log("AudioContext.resume failed", e));

const mediaStream = new MediaStream([
  videoStream.getVideoTracks()[0],
  audioDest.stream.getAudioTracks()[0],
]);

// --- signalling -----------------------------------------------------------------------------
function codecPreferences(codec) {
  const caps = RTCRtpReceiver.getCapabilities("video").codecs;
  const mime = `video/${codec}`.toLowerCase();
  let chosen = caps.filter((c) => c.mimeType.toLowerCase() === mime);
  if (codec === "H264") {
    // aiortc decodes packetization-mode=1, baseline / constrained baseline.
    const pm1 = chosen.filter((c) => (c.sdpFmtpLine || "").includes("packetization-mode=1"));
    const base = pm1.filter((c) => /profile-level-id=42[0e]0/i.test(c.sdpFmtpLine || ""));
    chosen = base.length ? base : pm1;
  }
  const rtx = caps.filter((c) => c.mimeType.toLowerCase() === "video/rtx");
  return chosen.length ? chosen.concat(rtx) : [];
}

function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHER_TIMEOUT_MS); // answer with what we have
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

async function answerOffer(msg) {
  const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: "max-bundle" });
  peers.set(msg.id, pc);
  pc.addEventListener("connectionstatechange", () => {
    log(`session ${msg.id}: ${pc.connectionState}`);
    // A receiver that vanished without DELETE: stop encoding for it.
    if (pc.connectionState === "failed" && peers.get(msg.id) === pc) {
      peers.delete(msg.id);
      pc.close();
    }
  });
  await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
  for (const track of mediaStream.getTracks()) {
    // addTrack reuses the recvonly transceiver the offer created, so the answer is sendonly.
    const sender = pc.addTrack(track, mediaStream);
    const transceiver = pc.getTransceivers().find((t) => t.sender === sender);
    if (track.kind === "video" && transceiver) {
      const prefs = codecPreferences(msg.codec);
      if (!prefs.length) throw new Error(`codec ${msg.codec} not supported by this browser`);
      transceiver.setCodecPreferences(prefs);
    }
  }
  await pc.setLocalDescription(await pc.createAnswer());
  await gatheringComplete(pc);
  return pc.localDescription.sdp;
}

async function handle(msg) {
  if (msg.type === "close") {
    const pc = peers.get(msg.id);
    peers.delete(msg.id);
    if (pc) pc.close();
    return;
  }
  let body;
  try {
    body = { sdp: await answerOffer(msg) };
  } catch (e) {
    log(`session ${msg.id} failed: ${e}`);
    body = { error: String(e) };
    const pc = peers.get(msg.id);
    peers.delete(msg.id);
    if (pc) pc.close();
  }
  await fetch(`/answer/${msg.id}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function pollLoop() {
  for (;;) {
    try {
      const resp = await fetch("/poll", { cache: "no-store" });
      if (resp.status === 200) {
        handle(await resp.json()); // not awaited: keep polling while gathering
      } else if (resp.status !== 204) {
        await new Promise((r) => setTimeout(r, 500));
      }
    } catch (e) {
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

log(`sender page up; H264 caps: ${codecPreferences("H264").length}, VP8: ${codecPreferences("VP8").length}`);
pollLoop();
