// WHEP receiver page: long-polls the control server for watches. Each watch offers
// recvonly video+audio (the control server does the WHEP POST), plays the stream in a
// <video> and posts getStats() samples every `period` s until `seconds` after the answer,
// or until the control server answers a sample with "stop". Each sample also carries the
// frames shown since the previous one (requestVideoFrameCallback): [wall s, s from the
// frame's last packet to its presentation].
// Never log the ICE servers: they carry TURN credentials.
"use strict";

const GATHER_TIMEOUT_MS = 5000;

function log(...parts) {
  const text = parts.map(String).join(" ");
  console.log(text);
  fetch("/log", { method: "POST", body: text }).catch(() => {});
}

function post(path, body) {
  return fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHER_TIMEOUT_MS); // offer what we have
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

// One sample from a getStats() report (field names: W3C webrtc-stats).
function sample(report) {
  const s = { wall: Date.now() / 1000 };
  let selectedPair = null;
  const pairs = [];
  report.forEach((st) => {
    if (st.type === "inbound-rtp" && st.kind === "video") {
      Object.assign(s, {
        frames_decoded: st.framesDecoded,
        frames_received: st.framesReceived,
        frames_dropped: st.framesDropped,
        freeze_count: st.freezeCount,
        total_freezes_duration: st.totalFreezesDuration,
        pause_count: st.pauseCount,
        packets_received: st.packetsReceived,
        packets_lost: st.packetsLost,
        nack_count: st.nackCount,
        pli_count: st.pliCount,
        jitter_buffer_delay: st.jitterBufferDelay,
        jitter_buffer_emitted_count: st.jitterBufferEmittedCount,
      });
    } else if (st.type === "inbound-rtp" && st.kind === "audio") {
      s.audio_packets_received = st.packetsReceived;
      s.audio_packets_lost = st.packetsLost;
    } else if (st.type === "transport" && st.selectedCandidatePairId) {
      selectedPair = report.get(st.selectedCandidatePairId) || null;
    } else if (st.type === "candidate-pair") {
      pairs.push(st);
    }
  });
  if (!selectedPair) {
    selectedPair = pairs.find((p) => p.nominated && p.state === "succeeded") || null;
  }
  const local = selectedPair ? report.get(selectedPair.localCandidateId) : null;
  return {
    sample: s,
    candidate_type: local ? local.candidateType : null,
    relay_protocol: local ? local.relayProtocol || null : null,
  };
}

async function watch(cmd) {
  const pc = new RTCPeerConnection({
    iceServers: cmd.ice_servers,
    iceTransportPolicy: cmd.relay_only ? "relay" : "all",
    bundlePolicy: "max-bundle",
  });
  const video = document.createElement("video");
  video.autoplay = true;
  video.muted = true;
  video.playsInline = true;
  document.body.appendChild(video);
  const stream = new MediaStream();
  video.srcObject = stream;
  const shown = [];
  const onFrame = (now, md) => {
    const wall = (performance.timeOrigin + md.presentationTime) / 1000;
    const latency = md.receiveTime === undefined ? null : (md.presentationTime - md.receiveTime) / 1000;
    shown.push([wall, latency]);
    video.requestVideoFrameCallback(onFrame);
  };
  if ("requestVideoFrameCallback" in video) video.requestVideoFrameCallback(onFrame);
  pc.addEventListener("track", (ev) => {
    stream.addTrack(ev.track);
    video.play().catch((e) => log(`watch ${cmd.id}: play() failed: ${e}`));
  });
  pc.addEventListener("connectionstatechange", () => {
    log(`watch ${cmd.id}: ${pc.connectionState}`);
  });
  const done = { error: null, candidate_type: null, relay_protocol: null };
  try {
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc);
    const resp = await fetch(`/offer/${cmd.id}`, { method: "POST", body: pc.localDescription.sdp });
    if (resp.status !== 200) throw new Error(await resp.text());
    await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
    // Absolute ticks, so a slow getStats() does not stretch the period.
    const t0 = performance.now();
    const end = t0 + cmd.seconds * 1000;
    for (let k = 1; ; k += 1) {
      const due = t0 + k * cmd.period * 1000;
      if (due > end) break;
      await sleep(Math.max(0, due - performance.now()));
      const got = sample(await pc.getStats());
      got.sample.shown = shown.splice(0);
      if (got.candidate_type) {
        done.candidate_type = got.candidate_type;
        done.relay_protocol = got.relay_protocol;
      }
      const resp = await post(`/sample/${cmd.id}`, got.sample);
      if (resp.status === 200 && (await resp.text()) === "stop") break;
    }
  } catch (e) {
    done.error = String(e);
    log(`watch ${cmd.id} failed: ${e}`);
  }
  // The control server DELETEs the WHEP resource before it answers; close after that.
  await post(`/done/${cmd.id}`, done).catch(() => {});
  pc.close();
  video.srcObject = null;
  video.remove();
}

async function pollLoop() {
  for (;;) {
    try {
      const resp = await fetch("/poll", { cache: "no-store" });
      if (resp.status === 200) {
        const cmd = await resp.json();
        if (cmd.type === "watch") watch(cmd); // not awaited: watches may overlap
      } else if (resp.status !== 204) {
        await sleep(500);
      }
    } catch (e) {
      await sleep(500);
    }
  }
}

log("receiver page up");
pollLoop();
