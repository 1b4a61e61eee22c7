// The connect page: signs in with an admin API token (kept in this tab's sessionStorage),
// builds the form from GET /v1/connectors, starts onboarding with POST /v1/systems/{id}/onboard
// and follows the consent URL; the server's callback sends the browser back here with
// #connected=<id>. Every value is written with textContent, never as HTML.
"use strict";

const TOKEN_KEY = "authplug.token";
const $ = (id) => document.getElementById(id);
let connectors = [];

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function say(text, isError) {
  const message = $("message");
  message.textContent = text;
  message.classList.toggle("error", Boolean(isError));
  // Errors interrupt a screen reader; progress does not.
  message.setAttribute("role", isError ? "alert" : "status");
  message.hidden = !text;
}

// What the consent's way back (#error=CODE) means; only known codes are shown, so a crafted
// link cannot put words in this page.
const OUTCOMES = {
  consent_refused: "The provider refused the consent: nothing was stored.",
  onboarding_failed: "The provider did not complete the connection (check the client id and secret): nothing was stored.",
  bad_state: "That consent is unknown, expired or already used: start again.",
  exists: "That system exists: tick \u201cConnect an existing system again\u201d to replace it.",
};

// Calls the API; answers the parsed body, or throws an Error with the server's message.
async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (response.status === 204) return null;
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(answer.message || method + " " + path + ": HTTP " + response.status);
    error.status = response.status;
    error.code = answer.error;
    throw error;
  }
  return answer;
}

function show(signedIn) {
  $("signin-section").hidden = signedIn;
  $("connect-section").hidden = !signedIn;
  $("systems-section").hidden = !signedIn;
  $("signout").hidden = !signedIn;
}

async function signIn(event) {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  await start();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  show(false);
  say("");
}

async function start() {
  if (!token()) return show(false);
  const outcome = new URLSearchParams(location.hash.slice(1));
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  try {
    connectors = (await api("GET", "/v1/connectors")).connectors;
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      show(false);
      return say("That token cannot sign in here: " + error.message, true);
    }
    connectors = [];
    say("The connectors could not be listed: " + error.message, true);
  }
  show(true);
  const select = $("connector");
  select.replaceChildren(...connectors.map((c) => {
    const option = document.createElement("option");
    option.value = c.name;
    option.textContent = c.display_name === c.name ? c.name : c.display_name + " (" + c.name + ")";
    option.disabled = !c.scheme;
    return option;
  }));
  if (connectors.length === 0 && $("message").hidden) say("The server was started without --connectors: there is nothing to connect.", true);
  pickConnector();
  const systems = await loadSystems();
  const connected = outcome.get("connected");
  if (connected && systems.some((s) => s.id === connected && s.state === "active")) {
    await verifySystem(connected, "System " + connected + " is connected. ");
  }
  const code = outcome.get("error");
  if (code) say(OUTCOMES[code] || "The connection did not complete (" + (/^[a-z_]{1,40}$/.test(code) ? code : "unknown") + ").", true);
}

// One input per secret the connector's onboarding wants.
function pickConnector() {
  const connector = connectors.find((c) => c.name === $("connector").value);
  const inputs = $("inputs");
  inputs.replaceChildren();
  if (!connector) return;
  $("connector-scheme").textContent = connector.scheme
    ? "Scheme: " + connector.scheme
    : "No loaded scheme serves auth " + connector.auth + ": it cannot be connected here.";
  if (!$("system").dataset.edited) $("system").value = connector.name;
  for (const wanted of connector.inputs) {
    const id = "secret-" + wanted.name;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = wanted.name + (wanted.generated ? " (made up if left empty)" : wanted.optional ? " (optional)" : "");
    const input = document.createElement("input");
    input.id = id;
    input.name = wanted.name;
    input.type = wanted.secret ? "password" : "text";
    input.autocomplete = "off";
    input.required = !wanted.optional && !wanted.generated;
    const hint = document.createElement("p");
    hint.className = "hint";
    hint.id = id + "-hint";
    hint.textContent = wanted.description;
    input.setAttribute("aria-describedby", hint.id);
    inputs.append(label, input, hint);
  }
}

async function connect(event) {
  event.preventDefault();
  const system = $("system").value.trim();
  const secrets = {};
  for (const input of $("inputs").querySelectorAll("input")) {
    if (input.value !== "") secrets[input.name] = input.value;
  }
  $("connect").disabled = true;
  say("Connecting " + system + "...");
  try {
    const answer = await api("POST", "/v1/systems/" + encodeURIComponent(system) + "/onboard", {
      connector: $("connector").value,
      secrets,
      replace: $("replace").checked,
      return_to: "/",
    });
    if (answer.step === "redirect") {
      // The secrets leave the form before the page does (Back would bring them back).
      $("connect-form").reset();
      say("Sending you to the provider's consent...");
      location.assign(answer.url);
      return;
    }
    $("connect-form").reset();
    delete $("system").dataset.edited;
    pickConnector();
    await verifySystem(system, "System " + system + " is connected (" + answer.state + "). ");
  } catch (error) {
    say(error.message, true);
  } finally {
    $("connect").disabled = false;
  }
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "\u2014";
}

// The systems are listed a page at a time: the cursor of the page shown, and of the next.
const PAGE = 100;
let pageCursor = null;
let nextCursor = null;

// Lists the current page of systems; answers it (empty when it could not be read).
async function loadSystems() {
  let systems;
  try {
    const query = "?limit=" + PAGE + (pageCursor ? "&cursor=" + encodeURIComponent(pageCursor) : "");
    const answer = await api("GET", "/v1/systems" + query);
    systems = answer.systems;
    nextCursor = answer.next_cursor || null;
  } catch (error) {
    say(error.message, true);
    return [];
  }
  const rows = systems.map((system) => {
    const row = document.createElement("tr");
    row.dataset.system = system.id;
    const cells = [system.id, system.connector || system.scheme + " (scheme)", system.state, system.state_reason || "",
      when(system.expires_at), when(system.last_refresh_at), String(system.failures),
      verifications.get(system.id) || "\u2014"];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    const state = row.children[2];
    state.className = "state state-" + system.state;
    row.children[7].className = "verification";
    const actions = document.createElement("td");
    const known = connectors.some((c) => c.name === system.connector && c.scheme);
    if (known) {
      const again = document.createElement("button");
      again.type = "button";
      again.textContent = system.state === "needs_reauth" ? "Reconnect" : "Connect again";
      again.setAttribute("aria-label", again.textContent + " " + system.id);
      again.addEventListener("click", () => reconnect(system));
      actions.append(again, " ");
    }
    const check = document.createElement("button");
    check.type = "button";
    check.textContent = "Verify";
    check.setAttribute("aria-label", "Verify " + system.id);
    check.addEventListener("click", () => verifySystem(system.id, ""));
    actions.append(check, " ");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Delete";
    remove.setAttribute("aria-label", "Delete " + system.id);
    remove.addEventListener("click", () => removeSystem(system.id));
    actions.append(remove);
    row.append(actions);
    return row;
  });
  $("systems").tBodies[0].replaceChildren(...rows);
  $("no-systems").hidden = systems.length > 0;
  const reauth = systems.filter((s) => s.state === "needs_reauth").length;
  const paged = pageCursor !== null || nextCursor !== null;
  $("counts").textContent = systems.length + " system" + (systems.length === 1 ? "" : "s") +
    (reauth ? ", " + reauth + " needing re-authorisation" : "") + (paged ? " on this page" : "");
  $("pages").hidden = !paged;
  $("first-page").disabled = pageCursor === null;
  $("next-page").disabled = nextCursor === null;
  filterSystems();
  return systems;
}

// Shows only the rows that contain the filter's text (hundreds of systems are many to scan).
function filterSystems() {
  const wanted = $("filter").value.trim().toLowerCase();
  for (const row of $("systems").tBodies[0].rows) {
    row.hidden = wanted !== "" && !row.textContent.toLowerCase().includes(wanted);
  }
}

// Fills the form to onboard a stored system again (after "needs re-authorisation").
function reconnect(system) {
  $("connector").value = system.connector;
  $("system").dataset.edited = "1";
  pickConnector();
  $("system").value = system.id;
  $("replace").checked = true;
  say("Enter " + system.id + "'s secrets again and press Connect.");
  const first = $("inputs").querySelector("input");
  (first || $("connect")).focus();
}

// What this page last found verifying each system: "verified 14:05:12", "refused (HTTP 401)".
const verifications = new Map();

// What a verification's outcome says, in words (the server's detail is one line, no secret).
function verificationText(v) {
  const request = v.method ? " (" + v.method + " " + v.url + (v.status ? ": HTTP " + v.status : "") + ")" : "";
  switch (v.outcome) {
    case "verified": return "Its credential is verified" + request + ".";
    case "refused": return "The provider refused its credential" + request + ": connect it again.";
    case "undeclared": return "Nothing to verify: " + v.detail + ".";
    default: return "It could not be verified" + request + ": " + v.detail + ".";
  }
}

// Sends the system's verification request and shows the outcome, after `prefix`.
async function verifySystem(id, prefix) {
  say(prefix + "Verifying " + id + "...");
  try {
    const v = await api("POST", "/v1/systems/" + encodeURIComponent(id) + "/verify");
    const failed = v.outcome !== "verified" && v.outcome !== "undeclared";
    const status = v.status ? " (HTTP " + v.status + ")" : "";
    verifications.set(id, v.outcome + (v.outcome === "verified" ? " " + new Date().toLocaleTimeString() : status));
    await loadSystems();
    say(prefix + verificationText(v), failed);
  } catch (error) {
    await loadSystems();
    say(prefix + "It could not be verified: " + error.message, true);
  }
}

// Deletes a system, its tokens revoked at the provider first. A provider that does not revoke
// keeps the system, unless the operator confirms deleting it anyway.
async function removeSystem(id) {
  if (!confirm("Revoke " + id + "'s tokens at the provider and delete it with its secrets?")) return;
  const path = "/v1/systems/" + encodeURIComponent(id) + "?revoke=true";
  try {
    let done;
    try {
      done = await api("DELETE", path);
    } catch (error) {
      // Only a provider that did not revoke, or a scheme no longer loaded, may be forced.
      if (error.code !== "not_revoked" && error.code !== "cannot_serve") throw error;
      if (!confirm(error.message + "\n\nDelete " + id + " anyway? Its grant may stay alive at the provider.")) {
        say(id + " is kept: " + error.message, true);
        return;
      }
      done = await api("DELETE", path + "&force=true");
    }
    const revoked = done.revoked.length ? " Revoked: " + done.revoked.join(", ") + "." : "";
    const notes = done.notes.length ? " " + done.notes.join(" ") : "";
    say("System " + id + " is deleted." + revoked + notes);
  } catch (error) {
    say(error.message, true);
  }
  await loadSystems();
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", signIn);
  $("connect-form").addEventListener("submit", connect);
  $("connector").addEventListener("change", pickConnector);
  $("system").addEventListener("input", () => { $("system").dataset.edited = "1"; });
  $("reload").addEventListener("click", loadSystems);
  $("first-page").addEventListener("click", () => { pageCursor = null; loadSystems(); });
  $("next-page").addEventListener("click", () => {
    if (nextCursor) { pageCursor = nextCursor; loadSystems(); }
  });
  $("filter").addEventListener("input", filterSystems);
  $("signout").addEventListener("click", signOut);
  start();
});
