// The login page: say why the last attempt failed (the form itself works without script).
"use strict";
(() => {
  const q = new URLSearchParams(location.search);
  const messages = {
    bad: "That token is not right.",
    wait: `Too many failed attempts from here. Try again in ${q.get("s") || "a minute"}${q.get("s") ? " s" : ""}.`,
    link: "That link is not valid any more. Ask for a new one, or log in with a token.",
  };
  const e = q.get("e");
  if (e && messages[e]) {
    const box = document.getElementById("error");
    box.textContent = messages[e];
    box.hidden = false;
    history.replaceState(null, "", "/login");
  }
})();
