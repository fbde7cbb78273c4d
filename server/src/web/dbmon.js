// dbmon sign-in pages: passkey registration (invite), CLI login, dashboard sign-in.
"use strict";

function b64uToBuf(s) {
  s = s.replace(/-/g, "+").replace(/_/g, "/");
  while (s.length % 4) s += "=";
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

function bufToB64u(buf) {
  const bytes = new Uint8Array(buf);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function say(text, kind) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.dataset.state = kind;
}

async function post(path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await r.json().catch(() => ({ error: "the server answered " + r.status }));
  if (!r.ok) throw new Error(data.error || "the server answered " + r.status);
  return data;
}

// A credential as the server reads it, with `response` the ceremony's own fields.
function credentialJSON(cred, response) {
  return {
    id: cred.id,
    rawId: bufToB64u(cred.rawId),
    type: cred.type,
    extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
    response,
  };
}

async function register() {
  const invite = location.hash.slice(1);
  if (!invite) { say("This page needs the whole invite URL, including the part after #.", "error"); return; }
  say("Waiting for your passkey…", "busy");
  try {
    const start = await post("/api/register/start", { invite });
    const pk = start.options.publicKey;
    pk.challenge = b64uToBuf(pk.challenge);
    pk.user.id = b64uToBuf(pk.user.id);
    for (const c of pk.excludeCredentials || []) c.id = b64uToBuf(c.id);
    const cred = await navigator.credentials.create({ publicKey: pk });
    const done = await post("/api/register/finish", {
      ceremony: start.ceremony,
      credential: credentialJSON(cred, {
        attestationObject: bufToB64u(cred.response.attestationObject),
        clientDataJSON: bufToB64u(cred.response.clientDataJSON),
        transports: cred.response.getTransports ? cred.response.getTransports() : [],
      }),
    });
    history.replaceState(null, "", location.pathname);
    say("Passkey registered for " + done.user + ". Sign in with: dbmon-client login", "done");
  } catch (e) {
    say("Registration failed: " + e.message, "error");
  }
}

// Asserts a passkey of `user`: `start` asks the server for a challenge,
// `finish` sends the signed answer. Returns what `finish` answered.
async function assertPasskey(start, finish) {
  const user = document.getElementById("user").value.trim();
  if (!user) throw new Error("enter your user name");
  say("Waiting for your passkey…", "busy");
  const started = await post(start.path, Object.assign({ user }, start.body));
  const pk = started.options.publicKey;
  pk.challenge = b64uToBuf(pk.challenge);
  for (const c of pk.allowCredentials || []) c.id = b64uToBuf(c.id);
  const cred = await navigator.credentials.get({ publicKey: pk });
  const r = cred.response;
  return post(finish.path, Object.assign({
    ceremony: started.ceremony,
    credential: credentialJSON(cred, {
      authenticatorData: bufToB64u(r.authenticatorData),
      clientDataJSON: bufToB64u(r.clientDataJSON),
      signature: bufToB64u(r.signature),
      userHandle: r.userHandle ? bufToB64u(r.userHandle) : null,
    }),
  }, finish.body));
}

// A CLI login: the token goes to the terminal that asked.
async function login() {
  const login = document.body.dataset.login;
  try {
    const done = await assertPasskey(
      { path: "/api/login/start", body: { login } },
      { path: "/api/login/finish", body: { login } },
    );
    say("Signed in as " + done.user + ". Return to your terminal.", "done");
  } catch (e) {
    say("Sign-in failed: " + e.message, "error");
  }
}

// The dashboard's sign-in: the server sets the session cookie, then the
// page asked for (or the overview) opens.
async function signin() {
  try {
    const done = await assertPasskey(
      { path: "/api/signin/start", body: {} },
      { path: "/api/signin/finish", body: {} },
    );
    say("Signed in as " + done.user + ".", "done");
    location.replace(location.pathname === "/signin" ? "/" : location.href);
  } catch (e) {
    say("Sign-in failed: " + e.message, "error");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const go = document.getElementById("go");
  if (!go) return;
  const pages = { invite: register, login, signin };
  go.addEventListener("click", pages[document.body.dataset.page]);
  const user = document.getElementById("user");
  if (user) user.addEventListener("keydown", (e) => { if (e.key === "Enter") go.click(); });
  if (!window.PublicKeyCredential) say("This browser does not support passkeys.", "error");
});
