// streambot console page. Vanilla JS, no build step.
// Live state over /ws/state, the picture over /ws/preview (binary JPEG frames),
// actions through the JSON API (/api, described at /api/openapi.json) with the
// session's CSRF token. Text from chat only ever goes in through textContent.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  const readonly = () => document.body.classList.contains("readonly");
  const wsUrl = (path) => `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${path}`;

  let session = { role: null, csrf: null, actor: "" };
  let state = null;
  let stateAt = 0;
  let lastSeq = 0;
  const history = { out: [], gen: [], lat: [], rate: [] };
  const HISTORY = 90;

  // -- talking to the show -----------------------------------------------------------------------
  async function api(method, path, body) {
    const headers = { "X-CSRF-Token": session.csrf || "" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await r.json(); } catch (e) { /* not JSON */ }
    if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
    if (!r.ok) throw new Error((data && data.error) || `${r.status} ${r.statusText}`);
    if (data && data.state) applyState(data.state);
    return data;
  }

  async function action(label, method, path, body) {
    try {
      await api(method, path, body);
      toast(label, "ok");
      return true;
    } catch (e) {
      if (e.message !== "logged out") toast(e.message, "err");
      return false;
    }
  }

  function toast(text, kind) {
    const t = el("div", `toast ${kind || ""}`, text);
    $("toasts").append(t);
    setTimeout(() => t.remove(), kind === "err" ? 6000 : 2600);
    while ($("toasts").children.length > 4) $("toasts").firstChild.remove();
  }

  // -- the live state ---------------------------------------------------------------------------------
  function connectState() {
    let delay = 500;
    const open = () => {
      const ws = new WebSocket(wsUrl("/ws/state"));
      ws.onopen = () => { delay = 500; setConn("ok", "live"); };
      ws.onmessage = (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch (e) { return; }
        if (msg.type === "state") applyState(msg);
        else if (msg.type === "health") applyHealth(msg);
        else if (msg.type === "logs") applyLogs(msg.lines);
        else if (msg.type === "timeline") applyTimeline(msg.actions);
      };
      ws.onclose = (ev) => {
        setConn("bad", "reconnecting");
        if (ev.code === 1008 || ev.code === 4401) { location.href = "/login"; return; }
        setTimeout(async () => {
          try {  // a restart logs everyone out: check before reconnecting
            const r = await fetch("/api/session", { credentials: "same-origin" });
            if (r.status === 401) { location.href = "/login"; return; }
          } catch (e) { /* server still down */ }
          open();
        }, delay);
        delay = Math.min(delay * 2, 8000);
      };
    };
    open();
  }

  function setConn(kind, text) {
    $("conn").className = `conn ${kind}`;
    $("conn-text").textContent = text;
  }

  function applyState(s) {
    state = s;
    stateAt = performance.now();
    document.body.classList.remove("loading");
    $("world-title").textContent = s.world.title;
    $("watch-link").hidden = !s.watch;
    document.title = `${s.off_air ? "OFF AIR" : "LIVE"} · ${s.world.title} · streambot`;
    $("world-name").textContent = s.world.name;
    if ($("world-select").value === "" || !worldTouched) $("world-select").value = s.world.name;
    // on air
    const pill = $("air-pill");
    pill.className = `pill ${s.off_air ? "pill-off" : "pill-live"}`;
    $("air-text").textContent = s.off_air ? "OFF AIR" : "LIVE";
    const kill = $("kill");
    kill.setAttribute("aria-pressed", String(s.off_air));
    $("kill-text").textContent = s.off_air ? "Back on air" : "Kill switch";
    $("offair-banner").hidden = !s.off_air;
    $("onair-text").textContent = s.on_air.text || "–";
    const src = s.on_air.source || "story";
    $("onair-source").textContent = { story: "the story", audience: "audience", console: "console" }[src] || src;
    $("onair-source").className = `tag ${src}`;
    $("onair-by").textContent = s.on_air.by ? `by ${s.on_air.by}` : (src === "story" ? "the world tells its own story" : "");
    $("onair-for").textContent = s.on_air.for_s != null ? `for ${fmtDuration(s.on_air.for_s)}` : "";
    setChecked("story-toggle", !s.story_paused);
    setChecked("music-toggle", !!s.music_on);
    setChecked("lock-toggle", !s.round.locked);
    // the round
    const r = s.round;
    $("round-no").textContent = r.mode === "anarchy" ? "· anarchy" : String(r.number);
    for (const b of document.querySelectorAll(".seg-btn")) b.classList.toggle("on", b.dataset.mode === r.mode);
    $("mode-tag").textContent = r.mode === "anarchy" ? "anarchy" : "voting";
    $("voters").textContent = String(r.voters);
    $("ideas").textContent = String(r.total_candidates);
    if (!lengthTouched) { $("length").value = String(Math.round(r.round_s)); $("length-out").textContent = `${Math.round(r.round_s)} s`; }
    renderMeter(s.meter, r.mode);
    renderCandidates(s);
    renderPending(s.pending || []);
    $("last-winner").textContent = s.last ? `Last winner (round ${s.last.round}): “${s.last.text}” by ${s.last.user}` : "";
    renderBans(s.bans || []);
    tickCountdown();
  }

  // chat's vote between the modes: anarchy's share from the left, the two thresholds marked
  function renderMeter(m, mode) {
    $("mode-meter").hidden = !m;
    if (!m) return;
    const share = m.share == null ? 0.5 : m.share;
    $("meter-fill").style.width = `${Math.round(share * 100)}%`;
    $("meter-fill").parentElement.setAttribute("aria-valuenow", String(Math.round(share * 100)));
    $("meter-to-anarchy").style.left = `${Math.round(m.threshold * 100)}%`;
    $("meter-to-democracy").style.left = `${Math.round((1 - m.threshold) * 100)}%`;
    $("meter-anarchy").textContent = String(m.anarchy);
    $("meter-democracy").textContent = String(m.democracy);
    const need = `${Math.round(m.threshold * 100)}% and ${m.min_voters} viewers to switch`;
    $("meter-note").textContent = m.cooldown_left_s > 0 ? `switch possible in ${Math.ceil(m.cooldown_left_s)} s` : need;
  }

  function setChecked(id, on) {
    const box = $(id);
    if (document.activeElement !== box) box.checked = on;
  }

  function renderCandidates(s) {
    const list = $("candidates");
    list.replaceChildren();
    const cands = s.candidates || [];
    $("no-candidates").hidden = cands.length > 0 || s.round.mode === "anarchy" || (!readonly() && (s.pending || []).length > 0);
    cands.forEach((c, i) => {
      const li = el("li", `cand${i === 0 && c.votes > 0 ? " lead" : ""}`);
      li.append(el("span", "num", c.number != null ? c.number : "?"));
      const text = el("span", "text", c.text);
      text.dir = "auto";
      li.append(text);
      li.append(el("span", "votes", `${fmtVotes(c.votes)} ${c.votes === 1 ? "vote" : "votes"}`));
      const who = el("span", "who", `${c.author} · ${c.platform}${c.voters > 1 ? ` · ${c.voters} voters` : ""}`);
      li.append(who);
      const bar = el("span", "bar");
      const fill = el("i");
      fill.style.width = `${Math.round((c.share || 0) * 100)}%`;
      bar.append(fill);
      li.append(bar);
      list.append(li);
    });
    if (s.round.mode === "anarchy") {
      const li = el("li", "empty", "Anarchy: every accepted prompt goes straight on air.");
      list.append(li);
    }
  }

  function renderPending(pending) {
    $("pending-box").hidden = pending.length === 0;
    $("pending-count").textContent = String(pending.length);
    const list = $("pending");
    list.replaceChildren();
    for (const p of pending) {
      const li = el("li");
      const text = el("span", "text", p.text);
      text.dir = "auto";
      text.append(el("small", null, `${p.author} · ${p.platform}${p.held ? " · held: the safety layers are unsure" : ""}`));
      const ok = el("button", "btn btn-small btn-ok", "Approve");
      ok.type = "button";
      ok.onclick = () => action("Approved", "POST", `/api/candidates/${p.id}/approve`);
      const no = el("button", "btn btn-small btn-danger", "Reject");
      no.type = "button";
      no.onclick = () => action("Rejected", "POST", `/api/candidates/${p.id}/reject`);
      li.append(text, ok, no);
      list.append(li);
    }
  }

  function renderBans(bans) {
    $("bans-count").textContent = `${bans.length} banned`;
    $("no-bans").hidden = bans.length > 0;
    const list = $("bans");
    list.replaceChildren();
    for (const key of bans) {
      const li = el("li", null, key);
      const x = el("button", null, "×");
      x.type = "button";
      x.title = `Unban ${key}`;
      x.setAttribute("aria-label", `Unban ${key}`);
      x.onclick = () => action(`Unbanned ${key}`, "DELETE", `/api/bans/${encodeURIComponent(key)}`);
      li.append(x);
      list.append(li);
    }
  }

  async function loadSessions() {
    try {
      renderSessions((await api("GET", "/api/sessions")).sessions);
    } catch (e) {
      if (e.message !== "logged out") toast(e.message, "err");
    }
  }

  function renderSessions(sessions) {
    $("sessions-count").textContent = String(sessions.length);
    const list = $("sessions");
    list.replaceChildren();
    for (const s of sessions) {
      const who = s.actor.replace(/^console:/, "");
      const until = new Date(s.expires * 1000).toLocaleString();
      const li = el("li", null, `${who} (${s.role})${s.current ? " · this page" : ""} · until ${until}`);
      if (!s.current) {
        const x = el("button", null, "×");
        x.type = "button";
        x.title = `Log ${who} out`;
        x.setAttribute("aria-label", `Log ${who} out`);
        x.onclick = async () => {
          try {
            renderSessions((await api("DELETE", `/api/sessions/${s.id}`)).sessions);
            toast(`Logged ${who} out`, "ok");
          } catch (e) {
            if (e.message !== "logged out") toast(e.message, "err");
          }
        };
        li.append(x);
      }
      list.append(li);
    }
  }

  // the countdown runs between state messages
  function tickCountdown() {
    if (!state) return;
    const r = state.round;
    const ring = $("ring");
    if (r.mode === "anarchy") {
      $("countdown").textContent = "∞";
      $("countdown-unit").textContent = "anarchy";
      ring.className = "ring idle";
      $("ring-fill").style.strokeDashoffset = "0";
      return;
    }
    const left = Math.max(0, r.time_left - (performance.now() - stateAt) / 1000);
    $("countdown").textContent = left >= 60 ? fmtClock(left) : String(Math.ceil(left));
    $("countdown-unit").textContent = left >= 60 ? "left" : "s left";
    const frac = r.round_s > 0 ? Math.min(1, left / r.round_s) : 0;
    $("ring-fill").style.strokeDashoffset = String(276.46 * (1 - frac));
    ring.className = `ring${left <= 3 ? " low" : ""}${r.locked ? " idle" : ""}`;
  }

  // -- health -------------------------------------------------------------------------------------------
  function applyHealth(h) {
    push("out", h.output_fps);
    push("gen", h.generator_fps);
    push("lat", h.prompt_to_pixel_ms ? h.prompt_to_pixel_ms.p50 : null);
    push("rate", h.bitrate_kbps);
    tile("t-out", fmt(h.output_fps, 1), history.out, h.output_fps < h.target_fps * 0.9 ? "bad" : h.output_fps < h.target_fps * 0.98 ? "warn" : "");
    tile("t-gen", fmt(h.generator_fps, h.generator_fps >= 100 ? 0 : 1), history.gen, h.generator_fps < h.target_fps ? "warn" : "");
    const p50 = h.prompt_to_pixel_ms ? h.prompt_to_pixel_ms.p50 : null;
    tile("t-lat", p50 == null ? "–" : fmt(p50, 0), history.lat, p50 > 3000 ? "bad" : p50 > 2000 ? "warn" : "");
    tile("t-rate", fmt(h.bitrate_kbps, 0), history.rate, "");
    fact("f-late", h.late_frames, h.late_frames > 0);
    fact("f-repeated", h.repeated_frames, h.repeated_frames > 0);
    const enc = h.encoder || {};
    // As OBS says it: of the skipped slots, those the encoder was too far behind to take.
    fact("f-skipped", enc.lag_frames ? `${h.skipped_frames} (${enc.lag_frames} encoding lag)` : h.skipped_frames,
      h.skipped_frames > 0);
    // Below the configured preset while encoding lags; it steps back up by itself.
    fact("f-preset", enc.preset === enc.configured ? (enc.preset || "–") : `${enc.preset} (down from ${enc.configured}: encoding lags)`,
      enc.preset !== enc.configured);
    fact("f-dropped", h.dropped_frames, h.dropped_frames > 0);
    fact("f-encode", `${fmt(h.encode_ms, 1)} ms`, h.encode_ms > 1000 / h.target_fps * 0.7);
    const p95 = h.prompt_to_pixel_ms ? h.prompt_to_pixel_ms.p95 : null;
    fact("f-p95", p95 == null ? "–" : `${fmt(p95, 0)} ms`, p95 > 3000);
    const pv = h.console && h.console.preview;
    fact("f-preview", pv && pv.encode_ms != null ? `${fmt(pv.encode_ms, 1)} ms` : "idle", false);
    $("uptime").textContent = `on air ${fmtDuration(h.uptime_s)} · ${h.ticks.toLocaleString()} frames at ${h.target_fps} fps`;
    statusList($("outputs"), h.outputs.map((o) => ({
      name: o.name, state: `${o.state}${o.reconnects ? ` · ${o.reconnects} reconnect${o.reconnects === 1 ? "" : "s"}` : ""}`,
      level: o.state === "live" ? "ok" : o.state === "failed" ? "bad" : "warn", extra: fmtBytes(o.bytes_sent),
    })));
    statusList($("adapters"), h.adapters.map((a) => ({
      name: a.name, state: a.state,
      level: /^(live|connected|ready|reading|open|running)$/.test(a.state) ? "ok" : /crash|fail|error|closed/.test(a.state) ? "bad" : "warn",
    })));
    $("no-adapters").hidden = h.adapters.length > 0;
    const w = h.world;
    if (w) {
      const retry = w.retry_in_s != null ? ` · retry in ${fmt(w.retry_in_s, 0)} s` : "";
      const standby = { budget: "GPU budget spent", no_viewers: "no viewers" }[w.standby];
      statusList($("world-state"), [{
        name: w.backend,
        state: standby ? `sketch world on air · ${standby}`
          : w.state === "ok" ? "rendering" : w.state === "holding" ? `holding the last frame${retry}` : `sketch world covering${retry}`,
        level: standby ? "warn" : w.state === "ok" ? "ok" : w.state === "holding" ? "warn" : "bad",
        extra: w.error || "",
      }]);
    }
    applyBudget(h.budget);
    const sys = h.system || {};
    const cpu = sys.cpu_percent != null ? sys.cpu_percent / (sys.cpu_count || 1) : null;
    meter("m-cpu", cpu, cpu == null ? "–" : `${fmt(sys.cpu_percent, 0)}% of ${sys.cpu_count}`);
    meter("m-mem", sys.system_memory_percent, sys.memory_mb != null ? `${fmtMB(sys.memory_mb)}` : "–");
    applySound(h.audio || {});
    if (sys.gpu) meter("m-gpu", 100 * sys.gpu.used_mb / sys.gpu.total_mb, `${fmtMB(sys.gpu.used_mb)} / ${fmtMB(sys.gpu.total_mb)}`);
    else meter("m-gpu", 0, "none");
  }

  // The GPU budget: hours a GPU world has been on air today, and why the sketch world covers (hidden for a CPU world).
  function applyBudget(b) {
    $("budget-card").hidden = !b || !b.active;
    if (!b || !b.active) return;
    const used = b.budget_h ? `${fmt(b.used_h, 2)} / ${fmt(b.budget_h, 2)} h` : `${fmt(b.used_h, 2)} h`;
    meter("m-budget", b.budget_h ? 100 * b.used_h / b.budget_h : 0, used);
    $("budget-tag").textContent = b.standby ? "sketch world on air" : `${b.world} world on air`;
    $("budget-tag").className = `tag${b.standby ? " warn" : ""}`;
    $("budget-viewers").textContent = b.viewers == null ? "unknown" : b.viewers.toLocaleString();
    $("budget-reset").textContent = fmtDuration(b.resets_in_s);
    let why = b.why ? `The sketch world is on air: ${b.why}.` : "";
    if (!why && b.idle_in_s != null) why = `Nobody is watching: the sketch world takes over in ${fmtDuration(b.idle_in_s)}.`;
    if (!why) why = b.budget_h ? `${fmt(b.left_h, 2)} GPU hours left today.` : "No daily limit ([budget] daily_gpu_hours).";
    $("budget-why").textContent = why;
  }

  // The loudness meter: -36..0 LUFS across the bar; streams sit in -16..-14.
  function applySound(a) {
    const pos = (v) => (v == null ? 0 : Math.max(0, Math.min(100, (v + 36) / 36 * 100)));
    const st = $("loud-st");
    st.style.width = `${pos(a.short_term_lufs)}%`;
    st.className = a.short_term_lufs != null && (a.short_term_lufs > -10 || a.short_term_lufs < -22) ? "warn" : "";
    $("loud-m").style.left = `calc(${pos(a.momentary_lufs)}% - 1px)`;
    const lu = (v) => (v == null ? "–" : `${fmt(v, 1)} LUFS`);
    $("loud-m-text").textContent = lu(a.momentary_lufs);
    $("loud-st-text").textContent = lu(a.short_term_lufs);
    $("loud-i-text").textContent = lu(a.integrated_lufs);
    const source = { generated: "generated", playlist: "your music", none: "weather only", off: "audio off" }[a.source] || a.source || "–";
    $("sound-source").textContent = a.music_on === false && a.source !== "off" ? "music off" : source;
    let what = "";
    if (a.source === "playlist" && a.track) what = `Now playing ${a.track}`;
    else if (a.source === "generated" && a.style) what = `${a.style}, ${a.key} ${a.mode}, ${Math.round(a.tempo)} bpm · mood: ${a.mood}`;
    if (a.late_blocks) what += `${what ? " · " : ""}late ${a.late_blocks}×, the weather filled in`;
    $("sound-what").textContent = what;
    $("sound-problem").hidden = !a.problem;
    $("sound-problem").textContent = a.problem || "";
    setChecked("music-toggle", !!a.music_on);
  }

  function push(key, v) {
    const a = history[key];
    a.push(v == null || !isFinite(v) ? null : v);
    if (a.length > HISTORY) a.shift();
  }

  function tile(id, text, series, level) {
    const t = $(id);
    t.className = `tile ${level || ""}`;
    t.querySelector("b").textContent = text;
    spark(t.querySelector("canvas"), series, level);
  }

  function spark(canvas, series, level) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 200, h = canvas.clientHeight || 40;
    if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const pts = series.map((v, i) => [i, v]).filter((p) => p[1] != null);
    if (pts.length < 2) return;
    let lo = Math.min(...pts.map((p) => p[1])), hi = Math.max(...pts.map((p) => p[1]));
    if (hi - lo < Math.max(1e-6, Math.abs(hi) * 0.05)) { const pad = Math.max(1, Math.abs(hi) * 0.05); lo -= pad; hi += pad; }
    const shift = HISTORY - series.length;  // newest point at the right edge
    const x = (i) => ((i + shift) / (HISTORY - 1)) * w;
    const y = (v) => h - 3 - ((v - lo) / (hi - lo)) * (h - 6);
    const color = level === "bad" ? "#ff3b4e" : level === "warn" ? "#ffae34" : "#ffc83d";
    const grad = g.createLinearGradient(0, 0, 0, h);
    grad.addColorStop(0, color + "55");
    grad.addColorStop(1, color + "00");
    g.beginPath();
    pts.forEach((p, k) => (k ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
    g.lineTo(x(pts[pts.length - 1][0]), h);
    g.lineTo(x(pts[0][0]), h);
    g.closePath();
    g.fillStyle = grad;
    g.fill();
    g.beginPath();
    pts.forEach((p, k) => (k ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
    g.strokeStyle = color;
    g.lineWidth = 1.6;
    g.lineJoin = "round";
    g.stroke();
  }

  function fact(id, value, warn) {
    const b = $(id);
    b.textContent = typeof value === "number" ? value.toLocaleString() : value;
    b.parentElement.className = `fact${warn ? " warn" : ""}`;
  }

  function statusList(list, items) {
    list.replaceChildren();
    for (const it of items) {
      const li = el("li", it.level);
      li.append(el("span", "dot"));
      const name = el("span", "name", it.name);
      name.title = it.name;
      li.append(name);
      li.append(el("span", "state", it.extra ? `${it.state} · ${it.extra}` : it.state));
      list.append(li);
    }
  }

  function meter(id, percent, text) {
    const bar = $(id);
    const p = percent == null || !isFinite(percent) ? 0 : Math.max(0, Math.min(100, percent));
    bar.style.width = `${p}%`;
    bar.className = p > 90 ? "bad" : p > 70 ? "warn" : "";
    $(`${id}-text`).textContent = text;
  }

  // -- logs and the timeline -------------------------------------------------------------------------------
  function applyLogs(lines) {
    const list = $("logs");
    const follow = $("log-follow").checked;
    for (const line of lines) {
      if (line.seq <= lastSeq) continue;
      lastSeq = line.seq;
      const li = el("li", line.level);
      li.append(el("span", "t", new Date(line.t * 1000).toLocaleTimeString([], { hour12: false })));
      li.append(el("span", "n", line.name));
      li.append(document.createTextNode(line.msg));
      list.append(li);
    }
    while (list.children.length > 400) list.firstChild.remove();
    if (follow) list.scrollTop = list.scrollHeight;
  }

  function applyTimeline(actions) {
    const list = $("timeline");
    list.replaceChildren();
    $("no-timeline").hidden = actions.length > 0;
    for (const a of actions) {
      const li = el("li");
      li.append(el("span", "ago", fmtAgo(a.ago_s)));
      const body = el("span");
      body.append(el("span", "actor", a.actor.replace(/^console:/, "")));
      body.append(document.createTextNode(` ${a.action} `));
      if (a.detail) body.append(el("span", "detail", a.detail));
      li.append(body);
      list.append(li);
    }
  }

  // -- the preview --------------------------------------------------------------------------------------------
  function connectPreview() {
    const img = $("preview");
    let url = null, frames = [], lastFrame = 0, delay = 500;
    const open = () => {
      const ws = new WebSocket(wsUrl("/ws/preview"));
      ws.binaryType = "blob";
      ws.onopen = () => { delay = 500; };
      ws.onmessage = (ev) => {
        if (!(ev.data instanceof Blob)) return;
        const next = URL.createObjectURL(ev.data);
        img.onload = () => { if (url && url !== next) URL.revokeObjectURL(url); url = next; };
        img.src = next;
        const now = performance.now();
        lastFrame = now;
        frames.push(now);
        while (frames.length && now - frames[0] > 3000) frames.shift();
        $("preview-empty").hidden = true;
        img.dataset.frames = String(Number(img.dataset.frames || 0) + 1);
      };
      ws.onclose = () => { setTimeout(open, delay); delay = Math.min(delay * 2, 8000); };
    };
    setInterval(() => {
      const now = performance.now();
      while (frames.length && now - frames[0] > 3000) frames.shift();
      const stale = now - lastFrame > 3000;
      $("preview-fps").textContent = `${(frames.length / 3).toFixed(1)} fps`;
      $("preview-live").classList.toggle("stale", stale);
      if (stale && lastFrame === 0) $("preview-empty").hidden = false;
    }, 1000);
    open();
  }

  // -- the controls ---------------------------------------------------------------------------------------------
  let worldTouched = false;
  let lengthTouched = false;

  function wireControls() {
    $("force-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const input = $("force-text");
      const text = input.value.trim();
      if (!text) return;
      if (await action(`On air: ${text}`, "POST", "/api/force", { text })) input.value = "";
    });
    $("kill").addEventListener("click", () => {
      const on = !(state && state.off_air);
      action(on ? "Off air: the slate is showing" : "Back on air", "POST", "/api/kill-switch", { on });
    });
    $("skip").addEventListener("click", () => action("Round skipped", "POST", "/api/round/skip"));
    for (const b of document.querySelectorAll(".seg-btn")) {
      b.addEventListener("click", () => {
        if (state && state.round.mode === b.dataset.mode) return;
        action(b.dataset.mode === "anarchy" ? "Anarchy mode" : "Voting rounds", "POST", "/api/mode", { mode: b.dataset.mode });
      });
    }
    $("story-toggle").addEventListener("change", (ev) => {
      const paused = !ev.target.checked;
      action(paused ? "Story paused" : "Story resumed", "POST", "/api/story", { paused });
    });
    $("music-toggle").addEventListener("change", (ev) => {
      const on = ev.target.checked;
      action(on ? "Music on" : "Music off (the weather goes on)", "POST", "/api/music", { on });
    });
    $("lock-toggle").addEventListener("change", (ev) => {
      const locked = !ev.target.checked;
      action(locked ? "Prompts locked" : "Prompts open", "POST", "/api/lock", { locked });
    });
    $("length").addEventListener("input", (ev) => { lengthTouched = true; $("length-out").textContent = `${ev.target.value} s`; });
    $("length-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const seconds = Number($("length").value);
      await action(`Rounds last ${seconds} s`, "POST", "/api/round-length", { seconds });
      lengthTouched = false;
    });
    $("world-select").addEventListener("change", () => { worldTouched = true; });
    $("world-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const preset = $("world-select").value;
      await action(`World: ${$("world-select").selectedOptions[0].textContent}`, "POST", "/api/world", { preset });
      worldTouched = false;
    });
    $("world-file").addEventListener("change", async (ev) => {
      const file = ev.target.files[0];
      ev.target.value = "";
      if (!file) return;
      if (file.size > 64000) { toast("That file is too big for a world (64 kB at most).", "err"); return; }
      await action(`Custom world loaded: ${file.name}`, "POST", "/api/world", { toml: await file.text() });
    });
    $("ban-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const user = $("ban-user").value.trim().replace(/^@/, "");
      const platform = $("ban-platform").value || null;
      if (!user) return;
      if (await action(`Banned ${user}`, "POST", "/api/bans", { user, platform })) $("ban-user").value = "";
    });
    $("share-show").addEventListener("click", async () => {
      try {
        const links = await api("GET", "/api/share");
        $("share-viewer").value = links.viewer;
        $("share-overlay").value = links.overlay;
        $("share").hidden = false;
        $("share-show").hidden = true;
      } catch (e) { toast(e.message, "err"); }
    });
    for (const b of document.querySelectorAll("[data-copy]")) {
      b.addEventListener("click", async () => {
        const input = $(b.dataset.copy);
        try { await navigator.clipboard.writeText(input.value); } catch (e) { input.select(); document.execCommand("copy"); }
        toast("Copied", "ok");
      });
    }
    $("logout").addEventListener("click", async () => {
      try { await api("POST", "/logout"); } catch (e) { /* gone anyway */ }
      location.href = "/login";
    });
  }

  async function loadPresets() {
    const presets = await api("GET", "/api/presets");
    const sel = $("world-select");
    sel.replaceChildren();
    for (const p of presets) {
      const o = el("option", null, p.title);
      o.value = p.name;
      o.title = p.description;
      sel.append(o);
    }
    if (state) sel.value = state.world.name;
  }

  // -- formatting --------------------------------------------------------------------------------------------------
  function fmt(v, digits) { return v == null || !isFinite(v) ? "–" : Number(v).toFixed(digits); }
  function fmtVotes(v) { return Number.isInteger(v) ? String(v) : v.toFixed(1); }
  function fmtClock(s) { s = Math.ceil(s); return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`; }
  function fmtDuration(s) {
    s = Math.floor(s || 0);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }
  function fmtAgo(s) { return s < 5 ? "now" : s < 60 ? `${Math.floor(s)}s` : s < 3600 ? `${Math.floor(s / 60)}m` : `${Math.floor(s / 3600)}h`; }
  function fmtBytes(b) { return b > 1e9 ? `${(b / 1e9).toFixed(2)} GB` : b > 1e6 ? `${(b / 1e6).toFixed(1)} MB` : `${Math.round(b / 1e3)} kB`; }
  function fmtMB(mb) { return mb >= 1024 ? `${(mb / 1024).toFixed(1)} GB` : `${Math.round(mb)} MB`; }

  // -- start ---------------------------------------------------------------------------------------------------------
  async function start() {
    try {
      const r = await fetch("/api/session", { credentials: "same-origin" });
      if (r.status === 401) { location.href = "/login"; return; }
      session = await r.json();
    } catch (e) {
      setConn("bad", "offline");
      setTimeout(start, 2000);
      return;
    }
    const viewerOnly = session.role !== "admin";
    document.body.classList.toggle("readonly", viewerOnly);
    $("who").textContent = `${session.actor.replace(/^console:/, "")}${viewerOnly ? " (read-only)" : ""}`;
    wireControls();
    connectState();
    connectPreview();
    setInterval(tickCountdown, 250);
    if (!viewerOnly) {
      loadPresets().catch((e) => toast(e.message, "err"));
      loadSessions();
      setInterval(loadSessions, 30000);
    }
  }

  start();
})();
