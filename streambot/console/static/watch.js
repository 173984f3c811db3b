// streambot watch page: the local server's HLS stream (copied from what goes
// out: its own frame rate, its sound) played by hls.js, shipped with the
// console; what is on air from /ws/state. Vanilla JS, no build step.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const video = $("video");
  const say = (text) => { $("status").textContent = text; };
  let playlist = null;
  let hls = null;
  let fragments = 0;

  function play() {
    video.play().catch(() => say("Press play to watch."));
  }

  function start(url) {
    if (window.Hls && window.Hls.isSupported()) {
      hls = new window.Hls({ liveSyncDurationCount: 2, enableWorker: true });
      hls.on(window.Hls.Events.MANIFEST_PARSED, () => { say("Live."); play(); });
      hls.on(window.Hls.Events.FRAG_BUFFERED, () => { fragments += 1; video.dataset.fragments = String(fragments); });
      hls.on(window.Hls.Events.ERROR, (_, data) => {
        if (!data.fatal) return;
        // The playlist appears a few seconds after the show starts, and again after a reconnect.
        say(`Waiting for the stream… (${data.details})`);
        hls.destroy();
        setTimeout(() => start(url), 2000);
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;  // Safari plays HLS itself
      play();
    } else {
      say("This browser cannot play the stream (it has no Media Source Extensions); use ffplay or VLC.");
    }
  }

  $("sound").addEventListener("click", () => {
    video.muted = false;
    play();
    $("sound").hidden = true;
  });
  video.addEventListener("volumechange", () => { $("sound").hidden = !video.muted; });

  function apply(s) {
    $("world-title").textContent = s.world.title;
    $("onair").textContent = s.on_air.text || "–";
    document.title = `${s.on_air.text || s.world.title} · streambot`;
    if (!s.watch) {
      say("This show has no local stream to watch here (the watch page comes with `streambot demo`).");
    } else if (playlist === null) {
      playlist = s.watch.playlist;
      start(playlist);
    }
  }

  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws/state`);
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "state") apply(msg);
    };
    ws.onclose = (ev) => {
      if (ev.code === 4401 || ev.code === 1008) { location.href = "/login"; return; }
      setTimeout(connect, 1000);
    };
  }
  connect();
})();
