// Push-to-talk: hold the button, speak, let go. The clip (MediaRecorder, the
// browser's microphone) is uploaded to /api/voice; the transcript and its
// command are shown, and one click on "Put it in" sends it to the round.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const button = $("ptt");
  if (!button) return;
  let csrf = null;
  let recorder = null;
  let chunks = [];
  let heardId = null;

  function say(text, kind) {
    const s = $("voice-status");
    s.textContent = text;
    s.dataset.kind = kind || "";
  }

  async function post(path, body, type) {
    if (!csrf) csrf = (await (await fetch("/api/session", { credentials: "same-origin" })).json()).csrf;
    const headers = { "X-CSRF-Token": csrf || "" };
    if (type) headers["Content-Type"] = type;
    const r = await fetch(path, { method: "POST", headers, body, credentials: "same-origin" });
    let data = null;
    try { data = await r.json(); } catch (e) { /* not JSON */ }
    if (!r.ok) throw new Error((data && data.error) || `${r.status} ${r.statusText}`);
    return data;
  }

  async function startTalking(ev) {
    ev.preventDefault();
    if (recorder) return;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (e) {
      say("The microphone is not available to this page.", "err");
      return;
    }
    chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
    recorder.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      const blob = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
      recorder = null;
      upload(blob);
    };
    recorder.start();
    button.classList.add("recording");
    button.textContent = "Listening… let go to send";
  }

  function stopTalking() {
    if (!recorder || recorder.state !== "recording") return;
    recorder.stop();
    button.classList.remove("recording");
    button.textContent = "Hold to talk";
  }

  async function upload(blob) {
    say("Transcribing…");
    $("voice-heard").hidden = true;
    try {
      const heard = await post("/api/voice", blob, blob.type);
      heardId = heard.id;
      $("voice-text").textContent = `“${heard.text || "…"}”`;
      const what = heard.command === "prompt" ? `Prompt: ${heard.argument}`
        : heard.command === "vote" ? `Vote for #${heard.argument}` : "No command in that.";
      $("voice-command").textContent = what;
      $("voice-confirm").hidden = !heard.command;
      $("voice-heard").hidden = false;
      say("");
    } catch (e) {
      say(e.message, "err");
    }
  }

  async function confirm() {
    if (!heardId) return;
    const id = heardId;
    heardId = null;
    $("voice-confirm").hidden = true;
    try {
      const r = await post(`/api/voice/${encodeURIComponent(id)}/confirm`);
      say(r.reply || "Done.", r.ok ? "ok" : "err");
    } catch (e) {
      say(e.message, "err");
    }
  }

  button.addEventListener("pointerdown", startTalking);
  for (const ev of ["pointerup", "pointerleave", "pointercancel"]) button.addEventListener(ev, stopTalking);
  button.addEventListener("keydown", (ev) => { if (ev.key === " " && !ev.repeat) startTalking(ev); });
  button.addEventListener("keyup", (ev) => { if (ev.key === " ") stopTalking(); });
  $("voice-confirm").addEventListener("click", confirm);

  // The speech model loads once the show is on air: while it does, ask again every few seconds.
  function readiness() {
    fetch("/api/voice", { credentials: "same-origin" }).then((r) => r.json()).then((v) => {
      $("voice-ready").textContent = v.model;
      $("voice-discord").textContent = v.discord;
      button.disabled = !v.ready;
      if (v.loading) setTimeout(readiness, 2000);
    }).catch(() => { /* the status line stays empty */ });
  }
  readiness();
})();
