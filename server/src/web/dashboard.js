// dbmon dashboard: the live channel (Server-Sent Events), ages, sign out.
// The server draws every fragment; this script only puts them in place.
"use strict";

function setLive(text, state) {
  const el = document.getElementById("live");
  el.textContent = text;
  el.dataset.state = state;
}

function age(ms) {
  const s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return Math.floor(s / 86400) + " d ago";
}

function ages() {
  for (const el of document.querySelectorAll("[data-at]")) {
    const at = Number(el.dataset.at);
    if (at > 0) el.textContent = age(at);
  }
}

// One fragment from the server: replaces the element with its id, adds a
// new cluster's tile, removes what is gone; a cell the page does not have
// (a new node or check) means the matrix changed shape: draw it again.
function apply(msg) {
  const el = document.getElementById(msg.id);
  if (!msg.html) {
    if (el) el.remove();
    return;
  }
  if (el) {
    el.outerHTML = msg.html;
    return;
  }
  const tiles = document.getElementById("tiles");
  if (msg.id.startsWith("tile-") && tiles) {
    const empty = document.getElementById("empty");
    if (empty) empty.remove();
    tiles.insertAdjacentHTML("beforeend", msg.html);
    return;
  }
  location.reload();
}

function connect() {
  const live = document.body.dataset.live;
  if (!live) {
    setLive("", "off");
    return;
  }
  const url = live + (live.includes("?") ? "&" : "?") + "after=" + document.body.dataset.position;
  const es = new EventSource(url);
  window.dbmonLive = es;
  es.onopen = () => setLive("live", "open");
  es.addEventListener("html", (e) => {
    apply(JSON.parse(e.data));
    ages();
  });
  es.addEventListener("end", (e) => {
    es.close();
    setLive("Signed out: " + JSON.parse(e.data).why + ". Sign in again to go on.", "ended");
  });
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) {
      setLive("Disconnected: sign in again or reload the page.", "closed");
    } else {
      setLive("reconnecting…", "connecting");
    }
  };
}

async function signout() {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  try {
    const r = await fetch("/api/signout", {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: "{}",
      credentials: "same-origin",
    });
    if (!r.ok) throw new Error("the server answered " + r.status);
    if (window.dbmonLive) window.dbmonLive.close();
    location.assign("/signin");
  } catch (e) {
    setLive("Sign out failed: " + e.message, "closed");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("signout").addEventListener("click", signout);
  connect();
  ages();
  setInterval(ages, 1000);
});
