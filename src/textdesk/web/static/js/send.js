// The send screen: one key press (Enter) or one click sends ONE message to the contact shown.
// The next contacts are prefetched, so the next one appears as soon as the server answers.
// Guarantees do not rest on this file: every send carries the contact id and the server keeps
// one message per (campaign, contact, step). Here we only avoid asking twice: key-repeat
// events are ignored and the button is disabled until the answer arrives.
(function () {
  "use strict";
  const root = document.getElementById("send-screen");
  if (!root) return;
  const campaign = root.dataset.campaign;
  const csrf = root.dataset.csrf;
  const $ = (id) => document.getElementById(id);
  const box = $("send-contact");
  const empty = $("send-empty");
  const button = $("send-button");
  const skipButton = $("skip-button");
  const status = $("send-status");
  const field = (name) => root.querySelector(`[data-testid="${name}"]`);
  const sentCount = field("sent-count");
  const REFILL_BELOW = 3;

  let queue = [];       // prefetched offers, oldest first
  let current = null;   // the offer on screen
  let busy = false;     // a send or skip is in flight
  let refilling = null; // the batch request in flight
  let exhausted = false;
  const done = new Set(); // contact ids sent or skipped in this tab

  async function post(path, body) {
    const response = await fetch(`/campaigns/${campaign}/send/${path}`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try { data = await response.json(); } catch (_) { /* an empty or HTML error page */ }
    return { ok: response.ok, status: response.status, data };
  }

  function say(text, bad) {
    status.textContent = text;
    status.classList.toggle("bad", Boolean(bad));
  }

  function refill() {
    if (refilling) return refilling;
    refilling = post("batch").then((r) => {
      if (!r.ok) {
        exhausted = true;
        say(r.data.detail || `could not get contacts (${r.status})`, true);
        return;
      }
      const known = new Set(queue.map((o) => o.contact_id));
      if (current) known.add(current.contact_id);
      for (const offer of r.data.contacts) {
        if (!known.has(offer.contact_id) && !done.has(offer.contact_id)) queue.push(offer);
      }
      exhausted = r.data.contacts.length === 0;
      if (exhausted) {
        if (r.data.held_back) waitForWindow(r.data);
        else empty.textContent = "All done: no contacts left in this campaign.";
      }
    }).catch(() => {
      say("the server did not answer; press Enter to retry", true);
    }).finally(() => { refilling = null; });
    return refilling;
  }

  // Everyone left is in their quiet hours: say until when (in the agent's own clock, the
  // gate's sentence gives the contact's), and ask again by itself once the window opens.
  let windowTimer = null;
  function waitForWindow(data) {
    clearInterval(windowTimer);
    const until = data.next_allowed ? new Date(data.next_allowed) : null;
    const render = () => {
      const n = data.held_back;
      const who = n === 1 ? "The 1 remaining contact is" : `All ${n} remaining contacts are`;
      if (!until) {
        empty.textContent = `No contact can be texted right now. ${who} outside the sending ` +
          `window: ${data.quiet_detail || "quiet hours"}.`;
        return;
      }
      const minutes = Math.max(1, Math.ceil((until - Date.now()) / 60000));
      const left = minutes < 60 ? `${minutes} min`
        : `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
      const when = until.toLocaleString([], { weekday: "short", hour: "numeric", minute: "2-digit" });
      empty.textContent = `No contact can be texted right now: ${who.toLowerCase()} in quiet ` +
        `hours until ${when} your time (in ${left}). Where they are: ${data.quiet_detail}. ` +
        "This page offers them as soon as the window opens.";
    };
    render();
    if (!until) return;
    windowTimer = setInterval(() => {
      if (Date.now() < until.getTime() + 1000) { render(); return; }
      clearInterval(windowTimer);
      exhausted = false;
      refill().then(show);
    }, 30000);
  }

  // "not sent: +1… opted out …" reads as "Not sent to Kim: +1… opted out …".
  const reason = (text) => String(text || "").replace(/^not sent: /i, "");

  function show() {
    if (!current && queue.length) current = queue.shift();
    if (current) {
      field("contact-name").textContent = current.name || "(no name)";
      field("contact-phone").textContent = current.phone;
      field("message-body").textContent = current.body;
      field("segments").textContent = `${current.segments} segment${current.segments === 1 ? "" : "s"}`;
      field("encoding").textContent = current.encoding;
      const missing = field("missing");
      missing.hidden = current.missing_fields.length === 0;
      missing.textContent = missing.hidden ? "" : `· no value for ${current.missing_fields.join(", ")}`;
      box.hidden = false;
      empty.hidden = true;
      box.dataset.contact = String(current.contact_id);
    } else {
      box.hidden = true;
      empty.hidden = false;
      delete box.dataset.contact;
    }
    if (queue.length < REFILL_BELOW && !exhausted) {
      refill().then(() => { if (!current) show(); });
    }
  }

  async function act(path) {
    if (busy || !current) return;
    busy = true;
    button.disabled = true;
    skipButton.disabled = true;
    const offer = current;
    try {
      const r = await post(path, { contact_id: offer.contact_id });
      if (r.ok) {
        done.add(offer.contact_id);
        if (path === "skip") {
          say(`Skipped ${offer.name || offer.phone}.`);
        } else if (r.data.status === "skipped") {
          say(`Not sent to ${offer.name || offer.phone}: ${reason(r.data.gate_detail)}`, true);
        } else {
          if (r.data.created) sentCount.textContent = String(Number(sentCount.textContent) + 1);
          say(`Sent to ${offer.name || offer.phone}.`);
        }
        current = null;
      } else if (r.status === 409 || r.status === 404) {
        // Refused with a reason (opted out, no longer yours, campaign paused): move on.
        done.add(offer.contact_id);
        say(`Not sent to ${offer.name || offer.phone}: ${reason(r.data.detail) || r.status}`, true);
        current = null;
        if (r.data.reason && r.data.reason.startsWith("campaign_")) {
          exhausted = true;
          queue = [];
        }
      } else {
        say(`${r.data.detail || "the send failed"} (${r.status}); press Enter to retry`, true);
      }
    } catch (_) {
      // The request may or may not have arrived; retrying is safe (same contact id).
      say("no answer from the server; press Enter to retry (it cannot send twice)", true);
    } finally {
      busy = false;
      button.disabled = false;
      skipButton.disabled = false;
      show();
    }
  }

  button.addEventListener("click", () => act("contact"));
  skipButton.addEventListener("click", () => act("skip"));
  document.addEventListener("keydown", (event) => {
    if (event.repeat || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    if (event.key === "Enter") {
      event.preventDefault(); // a focused button would otherwise get a click as well
      act("contact");
    } else if (event.key === "s" || event.key === "S") {
      event.preventDefault();
      act("skip");
    }
  });

  refill().then(show);
})();
