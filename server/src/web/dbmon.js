// dbmon sign-in pages: passkey registration (invite) and CLI login.
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

async function login() {
  const loginId = document.body.dataset.login;
  const user = document.getElementById("user").value.trim();
  if (!user) { say("Enter your user name.", "error"); return; }
  say("Waiting for your passkey…", "busy");
  try {
    const start = await post("/api/login/start", { login: loginId, user });
    const pk = start.options.publicKey;
    pk.challenge = b64uToBuf(pk.challenge);
    for (const c of pk.allowCredentials || []) c.id = b64uToBuf(c.id);
    const cred = await navigator.credentials.get({ publicKey: pk });
    const r = cred.response;
    const done = await post("/api/login/finish", {
      login: loginId,
      ceremony: start.ceremony,
      credential: credentialJSON(cred, {
        authenticatorData: bufToB64u(r.authenticatorData),
        clientDataJSON: bufToB64u(r.clientDataJSON),
        signature: bufToB64u(r.signature),
        userHandle: r.userHandle ? bufToB64u(r.userHandle) : null,
      }),
    });
    say("Signed in as " + done.user + ". Return to your terminal.", "done");
  } catch (e) {
    say("Sign-in failed: " + e.message, "error");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const go = document.getElementById("go");
  if (!go) return;
  go.addEventListener("click", document.body.dataset.page === "invite" ? register : login);
  if (!window.PublicKeyCredential) say("This browser does not support passkeys.", "error");
});
