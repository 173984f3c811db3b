// streambot overlay for OBS: the burned-in overlay's twin, drawn with HTML/CSS.
//
// The page (served by the console at /overlay) loads the layout from
// /overlay/layout.json and listens on the websocket /ws/overlay (same host; the
// page's query string, e.g. ?token=..., is passed through to both). Every
// message is either an overlay state (`OverlayState.to_json()`) or
// {"layout": {...}} (`layout_json(name)`) when the streamer switches layout.
// The socket reconnects by itself; after 20 s without it the overlay fades out
// rather than show a stale round. Chat text only ever goes in via textContent.
"use strict";
(function () {
  const MAX_TEXT = 400;
  const STALE_MS = 20000;

  // -- pure helpers (tested with node: tests/test_overlay_page.py) ---------------------

  /** Untrusted chat text -> one safe line, by streambot/text.py's rules for display
   *  (for_display), stated in the same Unicode properties: white space and controls
   *  become one space; what draws nothing goes (default-ignorables such as zero-width
   *  characters and bidi controls, other format characters, lone surrogates, the blank
   *  braille pattern) but for the joiner inside an emoji sequence and VS15/VS16; at
   *  most MAX_MARKS marks on a base; bounded length. tests/test_text.py holds the two
   *  to the same answers. */
  const MAX_MARKS = 2;
  const SPACE = /[\p{White_Space}\p{Cc}]/u;
  const IGNORED = /[\p{Default_Ignorable_Code_Point}\p{Cf}\p{Cs}\u2800]/u;
  const MARK = /[\p{Mn}\p{Me}]/u;
  const PICTOGRAPH = /\p{Extended_Pictographic}/u;
  const EMOJI_TAIL = /[\p{Extended_Pictographic}\p{Emoji_Modifier}\uFE0F]/u;
  function clean(s) {
    if (s === null || s === undefined) return "";
    const chars = Array.from(String(s).slice(0, 4 * MAX_TEXT).normalize("NFC"));
    const out = [];
    let marks = 0;
    for (let i = 0; i < chars.length; i++) {
      const ch = chars[i];
      const last = out.length ? out[out.length - 1] : null;
      if (SPACE.test(ch)) {
        if (last !== null && last !== " ") out.push(" ");
        marks = 0;
      } else if (ch === "\u200D") {
        if (last !== null && EMOJI_TAIL.test(last) && i + 1 < chars.length && PICTOGRAPH.test(chars[i + 1])) out.push(ch);
      } else if (ch === "\uFE0E" || ch === "\uFE0F") {
        if (last !== null && last !== " ") out.push(ch);
      } else if (IGNORED.test(ch)) {
        // draws nothing
      } else if (MARK.test(ch)) {
        if (last !== null && last !== " " && marks < MAX_MARKS) { out.push(ch); marks++; }
      } else {
        out.push(ch);
        marks = 0;
      }
    }
    if (out.length && out[out.length - 1] === " ") out.pop();
    return out.length > MAX_TEXT ? out.slice(0, MAX_TEXT).join("") + "…" : out.join("");
  }

  function covered(cp, ranges) {
    let lo = 0, hi = ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (cp < ranges[mid][0]) hi = mid - 1;
      else if (cp > ranges[mid][1]) lo = mid + 1;
      else return true;
    }
    return false;
  }

  /** Only what the shipped fonts can draw (`ranges`: layout.json's coverage):
   *  styled letters become plain ones, other strangers "?", never a box. */
  function drawable(text, ranges) {
    if (!ranges || !ranges.length) return text;
    let out = "";
    for (const ch of text) {
      const cp = ch.codePointAt(0);
      if (cp === 0x20 || cp === 0x200D || cp === 0xFE0F || cp === 0xFE0E || covered(cp, ranges)) { out += ch; continue; }
      const plain = ch.normalize("NFKC");
      if (plain !== ch && Array.from(plain).every((c) => covered(c.codePointAt(0), ranges))) out += plain;
      else if (!/\p{M}/u.test(ch)) out += "?";
    }
    return out;
  }

  function wsUrl(loc) {
    const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${loc.host}/ws/overlay${loc.search || ""}`;
  }

  function layoutUrl(loc) {
    return `/overlay/layout.json${loc.search || ""}`;
  }

  function formatClock(seconds) {
    const s = Math.max(0, Math.floor(Number(seconds) || 0));
    const m = Math.floor(s / 60);
    return m ? `${m}:${String(s % 60).padStart(2, "0")}` : `${s}s`;
  }

  function rgba(hex, opacity) {
    const m = /^#([0-9a-f]{6})([0-9a-f]{2})?$/i.exec(hex || "");
    if (!m) return "transparent";
    const n = parseInt(m[1], 16);
    const a = (m[2] ? parseInt(m[2], 16) / 255 : 1) * (opacity === undefined ? 1 : opacity);
    return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${+a.toFixed(3)})`;
  }

  const vh = (f) => `${+(f * 100).toFixed(4)}vh`;
  const vw = (f) => `${+(f * 100).toFixed(4)}vw`;

  /** The layout's style as CSS custom properties. */
  function cssVars(layout) {
    const st = layout.style;
    return {
      "--text": st.text, "--muted": st.muted, "--accent": st.accent, "--accent-text": st.accent_text,
      "--live": st.live, "--backing": rgba(st.backing, st.backing_opacity),
      "--border": rgba(st.border, st.border_opacity), "--border-w": st.border_width ? `max(1px, ${vh(st.border_width)})` : "0px",
      "--radius": vh(st.radius), "--pad": vh(st.padding),
      "--glow": vh(st.glow), "--glow-color": rgba(st.glow_color, st.glow ? st.glow_opacity : 0),
      "--outline": vh(st.outline * 2), "--outline-color": st.outline_color,
      "--track": rgba(st.text, st.bar_track_opacity),
      "--now-size": vh(layout.now.text_size), "--now-w": vw(layout.now.width), "--now-lines": String(layout.now.max_lines),
      "--vote-size": vh(layout.vote.text_size), "--vote-w": vw(layout.vote.width),
      "--help-size": vh(layout.help.text_size), "--help-w": vw(layout.help.width),
      "--small": `max(${vh(0.022)}, .62em)`,
      "--font": fontStack(layout, "Overlay"), "--font-light": fontStack(layout, "OverlayLight"),
    };
  }

  function fontStack(layout, first) {
    const f = layout.fonts || { fallbacks: [] };
    const names = [first, ...f.fallbacks.map((_, i) => `OverlayFallback${i}`), "OverlayEmoji"];
    return names.map((n) => `"${n}"`).join(", ") + ", sans-serif";
  }

  /** @font-face rules for the shipped fonts (served from /overlay/fonts/). */
  function fontFaces(layout) {
    const f = layout.fonts;
    if (!f) return "";
    const face = (family, file) => `@font-face { font-family: "${family}"; src: url("/overlay/fonts/${encodeURIComponent(file)}"); font-display: block; }`;
    return [face("Overlay", f.primary), face("OverlayLight", f.light),
      ...f.fallbacks.map((file, i) => face(`OverlayFallback${i}`, file)), face("OverlayEmoji", f.emoji)].join("\n");
  }

  /** Where a panel goes: its anchor point at (x, y) of the viewport. */
  function placement(panel) {
    const [v, h] = panel.anchor.includes("-") ? panel.anchor.split("-") : ["middle", "center"];
    const tx = h === "right" ? "-100%" : h === "center" ? "-50%" : "0";
    const ty = v === "bottom" ? "-100%" : v === "middle" ? "-50%" : "0";
    return { left: vw(panel.x), top: vh(panel.y), transform: `translate(${tx}, ${ty})` };
  }

  /** How to play, split into chat commands (accent), words and separators. */
  function helpPieces(text, ranges) {
    const out = [];
    drawable(clean(text), ranges).split("·").map((s) => s.trim()).filter(Boolean).forEach((seg, i) => {
      if (i) out.push({ kind: "sep", text: "·" });
      seg.split(" ").filter(Boolean).forEach((w) => out.push({ kind: w.startsWith("!") ? "cmd" : "word", text: w }));
    });
    return out;
  }

  /** What to show for a state and layout: plain data, no DOM. */
  function viewModel(state, layout) {
    if (!state || state.off_air) return { visible: false };
    const cleanText = (t) => drawable(clean(t), layout.coverage);
    const vote = layout.vote;
    const cands = (state.candidates || []).slice(0, vote.max_candidates);
    const lead = Math.max(0, ...cands.map((c) => Number(c.share) || 0));
    let by;
    if (state.source === "story" || !state.on_air_by) by = state.on_air ? "the world's own story" : "the story begins";
    else by = `by ${cleanText(state.on_air_by)}` + (state.source === "audience" ? "" : " (streamer)");
    const anarchy = state.mode === "anarchy";
    return {
      visible: true,
      now: layout.now.show ? {
        label: layout.now.label, title: layout.now.show_title ? cleanText(state.title) : "",
        prompt: cleanText(state.on_air), by,
      } : null,
      vote: vote.show && !(anarchy && !cands.length) ? {
        title: anarchy ? "ANARCHY" : vote.title,
        round: state.round ? `ROUND ${state.round}` : "",
        clock: state.locked ? "PAUSED" : anarchy ? "" : formatClock(state.seconds_left),
        urgent: !!state.locked || (state.seconds_left > 0 && state.seconds_left <= 3),
        time: !anarchy && state.round_s > 0 ? Math.min(1, Math.max(0, state.seconds_left / state.round_s)) : 0,
        candidates: cands.map((c) => {
          const share = Math.min(1, Math.max(0, Number(c.share) || 0));
          return { number: String(c.number), text: cleanText(c.text), share,
            percent: vote.show_percent ? `${Math.round(share * 100)}%` : "", lead: lead > 0 && share === lead };
        }),
      } : null,
      help: layout.help.show && cleanText(state.how_to_play) ? { label: layout.help.label, pieces: helpPieces(state.how_to_play, layout.coverage) } : null,
    };
  }

  // -- the page ------------------------------------------------------------------------

  function startPage() {
    const $ = (id) => document.getElementById(id);
    let layout = null;
    let state = null;
    let lastLayout = "";
    const fontStyle = document.createElement("style");
    document.head.appendChild(fontStyle);

    function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

    function applyLayout(next) {
      const key = JSON.stringify(next);
      if (key === lastLayout) return;
      lastLayout = key;
      layout = next;
      fontStyle.textContent = fontFaces(layout);
      for (const [k, v] of Object.entries(cssVars(layout))) document.documentElement.style.setProperty(k, v);
      for (const name of ["now", "vote", "help"]) Object.assign($(name).style, placement(layout[name]));
      render();
    }

    function render() {
      if (!layout) return;
      const vm = viewModel(state, layout);
      $("overlay").hidden = !vm.visible;
      if (!vm.visible) return;
      $("now").hidden = !vm.now;
      if (vm.now) {
        setText($("now-label"), vm.now.label);
        setText($("title"), vm.now.title);
        setText($("prompt"), vm.now.prompt);
        $("prompt").hidden = !vm.now.prompt;
        setText($("by"), vm.now.by);
      }
      $("vote").hidden = !vm.vote;
      if (vm.vote) {
        setText($("vote-title"), vm.vote.title);
        setText($("round"), vm.vote.round);
        setText($("clock"), vm.vote.clock);
        $("clock").classList.toggle("urgent", vm.vote.urgent);
        $("time-bar").style.width = `${(vm.vote.time * 100).toFixed(2)}%`;
        $("no-ideas").hidden = vm.vote.candidates.length > 0;
        const list = $("candidates");
        while (list.children.length > vm.vote.candidates.length) list.lastChild.remove();
        vm.vote.candidates.forEach((c, i) => {
          let li = list.children[i];
          if (!li) {
            li = document.createElement("li");
            li.className = "cand";
            li.innerHTML = '<span class="num"><span></span></span><span class="text" dir="auto"></span>'
              + '<span class="pct"></span><span class="track"><span class="fill"></span></span>';
            list.appendChild(li);
          }
          li.classList.toggle("lead", c.lead);
          setText(li.querySelector(".num span"), c.number);
          setText(li.querySelector(".text"), c.text);
          setText(li.querySelector(".pct"), c.percent);
          li.querySelector(".fill").style.width = `${(c.share * 100).toFixed(2)}%`;
        });
      }
      $("help").hidden = !vm.help;
      if (vm.help) {
        setText($("help-label"), vm.help.label);
        $("help-label").hidden = !vm.help.label;
        const how = $("how");
        how.replaceChildren(...vm.help.pieces.map((p, i) => {
          const span = document.createElement("span");
          span.className = p.kind;
          span.textContent = p.text + (p.kind !== "sep" && vm.help.pieces[i + 1] && vm.help.pieces[i + 1].kind !== "sep" ? " " : "");
          return span;
        }));
      }
    }

    async function loadLayout() {
      try {
        const r = await fetch(layoutUrl(location), { cache: "no-store" });
        if (r.ok) applyLayout(await r.json());
      } catch (e) { /* the socket's reconnect will try again */ }
    }

    let delay = 1000;
    let staleTimer = null;
    function markStale() { $("overlay").classList.add("stale"); }

    function connect() {
      const ws = new WebSocket(wsUrl(location));
      ws.onopen = () => {
        delay = 1000;
        clearTimeout(staleTimer);
        $("overlay").classList.remove("stale");
        loadLayout();
      };
      ws.onmessage = (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch (e) { return; }
        if (!msg || typeof msg !== "object") return;
        if (msg.layout && typeof msg.layout === "object") applyLayout(msg.layout);
        else if ("candidates" in msg) { state = msg; render(); }
      };
      ws.onclose = () => {
        clearTimeout(staleTimer);
        staleTimer = setTimeout(markStale, STALE_MS);
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 10000);
      };
      ws.onerror = () => ws.close();
    }

    loadLayout();
    setInterval(loadLayout, 60000);
    connect();
  }

  const cleanText = (t, ranges) => drawable(clean(t), ranges);
  const api = { clean, cleanText, drawable, wsUrl, layoutUrl, formatClock, rgba, cssVars, fontFaces, placement, helpPieces, viewModel };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else startPage();
})();
