// The inbox: live updates (SSE /events), keyboard shortcuts, the composer's counter, the
// merge-field preview and the "/" canned-response picker. No inline script (strict CSP).
(function () {
  "use strict";

  // GSM-7 as in textdesk.domain.encoding (3GPP TS 23.038; 'Ç' not 'ç' at 0x09).
  var GSM_BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var GSM_EXT = "^{}\\[~]|€\f";

  function measure(text) {
    var septets = 0;
    var gsm = true;
    for (var ch of text) {
      if (GSM_BASIC.indexOf(ch) >= 0) septets += 1;
      else if (GSM_EXT.indexOf(ch) >= 0) septets += 2;
      else { gsm = false; break; }
    }
    if (gsm) {
      return { encoding: "GSM-7", length: septets,
        segments: septets === 0 ? 0 : septets <= 160 ? 1 : Math.ceil(septets / 153) };
    }
    var units = text.length; // UTF-16 code units, as UCS-2 counts them
    return { encoding: "UCS-2", length: units, segments: units <= 70 ? 1 : Math.ceil(units / 67) };
  }

  function csrf() {
    var h = document.body.getAttribute("hx-headers");
    try { return JSON.parse(h)["X-CSRF-Token"]; } catch (e) { return ""; }
  }

  function openId() {
    var pane = document.querySelector(".thread-pane");
    return pane ? pane.getAttribute("data-conversation") : null;
  }

  function filters() {
    var root = document.getElementById("inbox");
    return root ? root.getAttribute("data-filters") || "" : "";
  }

  function typing(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
      el.isContentEditable);
  }

  // --- live updates ------------------------------------------------------------------------
  var listTimer = null;
  var threadTimer = null;

  function refreshList() {
    clearTimeout(listTimer);
    listTimer = setTimeout(function () {
      var id = openId();
      var q = filters();
      var url = "/inbox/list?" + q + (id ? (q ? "&" : "") + "open=" + id : "");
      htmx.ajax("GET", url, { target: "#conv-list", swap: "innerHTML" });
    }, 150);
  }

  // Parts of the thread a live refresh may replace while the agent is typing somewhere in it.
  var LIVE_PARTS = ["thread-head", "review-box", "consent-state", "messages", "survey", "notes-list"];

  function busy() {
    var pane = document.getElementById("thread");
    if (!pane) return false;
    // Typing, or a control reached with the keyboard (a survey option, an action): keep it.
    if (pane.contains(document.activeElement) && document.activeElement !== pane) return true;
    return Array.prototype.some.call(pane.querySelectorAll("input[type=text], input:not([type]), textarea"),
      function (el) { return el.value; });
  }

  function refreshThread() {
    var id = openId();
    if (!id) return;
    clearTimeout(threadTimer);
    threadTimer = setTimeout(function () {
      if (!busy()) {
        htmx.ajax("GET", "/inbox/c/" + id,
          { target: "#thread", swap: "innerHTML", headers: { "X-Live-Refresh": "1" } });
        return;
      }
      // Never wipe what the agent is typing: refresh only the parts that show state.
      fetch("/inbox/c/" + id, { credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          if (openId() !== id) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          LIVE_PARTS.forEach(function (part) {
            var fresh = doc.getElementById(part);
            var old = document.getElementById(part);
            // The part holding the focus stays as it is (the next refresh brings it up to date).
            if (fresh && old && !old.contains(document.activeElement)) old.replaceWith(fresh);
          });
          // The contact opted out while the agent was typing: what they typed cannot be sent.
          var freshComposer = doc.getElementById("composer");
          var oldComposer = document.getElementById("composer");
          if (freshComposer && oldComposer && freshComposer.hasAttribute("data-blocked") !==
              oldComposer.hasAttribute("data-blocked")) oldComposer.replaceWith(freshComposer);
          scrollThread();
          if (window.htmx) htmx.process(document.getElementById("thread"));
        });
    }, 150);
  }

  // The whole-thread swap above was chosen when the request went out. If the agent has reached
  // into the thread since (clicked into the composer, typed, pressed a key), swapping now would
  // take their text or focus away: drop this answer and refresh again, part by part.
  document.addEventListener("htmx:beforeSwap", function (e) {
    var config = e.detail.requestConfig;
    var live = config && config.headers && config.headers["X-Live-Refresh"];
    if (live && e.detail.target && e.detail.target.id === "thread" && busy()) {
      e.detail.shouldSwap = false;
      refreshThread();
    }
  });

  function shown(ids) {
    for (var i = 0; i < ids.length; i++) {
      if (document.querySelector('[data-message-id="' + ids[i] + '"]')) return true;
    }
    return false;
  }

  function connect() {
    if (!window.EventSource || !document.getElementById("inbox")) return;
    var source = new EventSource("/events");
    source.addEventListener("message.new", function (e) {
      var d = JSON.parse(e.data);
      refreshList();
      if (String(d.conversation_id) === openId()) refreshThread();
    });
    source.addEventListener("message.status", function (e) {
      var d = JSON.parse(e.data);
      if (shown(d.message_ids || [])) refreshThread();
    });
    source.addEventListener("conversation.updated", function (e) {
      var d = JSON.parse(e.data);
      refreshList();
      if (String(d.conversation_id) === openId()) refreshThread();
    });
    source.addEventListener("resync", function () { refreshList(); refreshThread(); });
    source.addEventListener("open", function () { document.body.setAttribute("data-live", "1"); });
    source.onopen = function () { document.body.setAttribute("data-live", "1"); };
  }

  // --- composer ------------------------------------------------------------------------------
  var previewTimer = null;
  var picker = { items: [], index: 0, open: false };

  function updateCounter() {
    var box = document.getElementById("composer-body");
    var counter = document.getElementById("counter");
    if (!box || !counter) return;
    var m = measure(box.value);
    counter.textContent = m.length + (m.encoding === "GSM-7" ? " septets" : " chars") + " · " +
      m.encoding + " · " + m.segments + (m.segments === 1 ? " segment" : " segments");
    counter.classList.toggle("ucs2", m.encoding === "UCS-2");
    var out = document.getElementById("merge-preview");
    var found = document.getElementById("composer-findings");
    clearTimeout(previewTimer);
    if (!out) return;
    if (!box.value.trim()) { out.textContent = ""; showFindings(found, []); return; }
    previewTimer = setTimeout(function () {
      var body = new URLSearchParams({ body: box.value });
      fetch("/inbox/c/" + box.getAttribute("data-conversation") + "/preview", {
        method: "POST", credentials: "same-origin", body: body,
        headers: { "X-CSRF-Token": csrf() }
      }).then(function (r) { return r.json(); }).then(function (d) {
        if (d.error) { out.textContent = d.error; showFindings(found, []); return; }
        out.textContent = box.value.indexOf("{") < 0 ? "" : "→ " + d.text +
          (d.missing.length ? " (no value: " + d.missing.join(", ") + ")" : "");
        showFindings(found, d.findings || []);
      });
    }, 250);
  }

  // The content rules' findings for what is typed (shortened links, SHAFT words...): a block
  // means the gate will refuse the message; a warning is shown to the sender and kept.
  function showFindings(el, findings) {
    if (!el) return;
    el.innerHTML = "";
    findings.forEach(function (f) {
      var li = document.createElement("li");
      li.className = "finding " + f.severity;
      li.setAttribute("data-testid", "composer-finding");
      li.textContent = (f.severity === "block" ? "Will not send: " : "Warning: ") + f.message;
      if (f.fix) {
        var fix = document.createElement("button");
        fix.type = "button";
        fix.className = "link";
        fix.textContent = "Apply fix";
        fix.setAttribute("data-testid", "apply-fix");
        fix.addEventListener("click", function () {
          var box = document.getElementById("composer-body");
          if (!box) return;
          box.value = f.fix;
          box.focus();
          updateCounter();
        });
        li.appendChild(document.createTextNode(" "));
        li.appendChild(fix);
      }
      el.appendChild(li);
    });
    el.hidden = findings.length === 0;
  }

  function renderPicker() {
    var el = document.getElementById("canned-picker");
    if (!el) return;
    el.innerHTML = "";
    if (!picker.open || !picker.items.length) { el.hidden = true; return; }
    picker.items.forEach(function (item, i) {
      var opt = document.createElement("div");
      opt.className = "opt";
      opt.setAttribute("role", "option");
      opt.setAttribute("aria-selected", i === picker.index ? "true" : "false");
      opt.setAttribute("data-testid", "canned-option");
      var title = document.createElement("strong");
      title.textContent = item.title;
      var text = document.createElement("small");
      text.textContent = item.text;
      opt.appendChild(title);
      opt.appendChild(text);
      opt.addEventListener("mousedown", function (e) { e.preventDefault(); choose(i); });
      el.appendChild(opt);
    });
    el.hidden = false;
  }

  function searchCanned(box) {
    var q = box.value.slice(1);
    fetch("/inbox/c/" + box.getAttribute("data-conversation") + "/canned?q=" +
      encodeURIComponent(q), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (d) {
        if (!box.value.startsWith("/")) return;
        picker.items = d.items; picker.index = 0; picker.open = true; renderPicker();
      });
  }

  function closePicker() { picker.open = false; picker.items = []; renderPicker(); }

  function choose(i) {
    var box = document.getElementById("composer-body");
    var item = picker.items[i];
    if (!box || !item) return;
    box.value = item.text;
    closePicker();
    updateCounter();
    box.focus();
  }

  function send(box) {
    if (!box.value.trim()) return;
    var form = box.form;
    if (form.getAttribute("data-sending")) return; // one send per key press, however held
    form.setAttribute("data-sending", "1");
    htmx.trigger(form, "submit");
  }

  function composerKeys(e) {
    var box = e.target;
    if (picker.open) {
      if (e.key === "ArrowDown") { picker.index = Math.min(picker.index + 1, picker.items.length - 1); renderPicker(); e.preventDefault(); return; }
      if (e.key === "ArrowUp") { picker.index = Math.max(picker.index - 1, 0); renderPicker(); e.preventDefault(); return; }
      if (e.key === "Enter" || e.key === "Tab") { e.preventDefault(); choose(picker.index); return; }
      if (e.key === "Escape") { closePicker(); e.preventDefault(); return; }
    }
    if (e.key === "Enter" && !e.shiftKey) {
      var multiline = box.value.indexOf("\n") >= 0;
      if (e.ctrlKey || e.metaKey || !multiline) {
        e.preventDefault();
        if (!e.repeat) send(box);
      }
    }
    if (e.key === "Escape") box.blur();
  }

  // --- keyboard shortcuts ----------------------------------------------------------------------
  function move(step) {
    var links = Array.prototype.slice.call(document.querySelectorAll("#conv-list .conv a"));
    if (!links.length) return;
    var id = openId();
    var at = links.findIndex(function (a) { return a.getAttribute("data-conversation") === id; });
    var next = at < 0 ? 0 : Math.max(0, Math.min(links.length - 1, at + step));
    links.forEach(function (a) { a.parentElement.classList.remove("current"); });
    links[next].parentElement.classList.add("current");
    links[next].click();
  }

  function toggleHelp(show) {
    var help = document.getElementById("help");
    if (help) help.hidden = show === undefined ? !help.hidden : !show;
  }

  document.addEventListener("keydown", function (e) {
    if (e.target && e.target.id === "composer-body") { composerKeys(e); return; }
    if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "j") { move(1); e.preventDefault(); }
    else if (e.key === "k") { move(-1); e.preventDefault(); }
    else if (e.key === "?") { toggleHelp(); e.preventDefault(); }
    else if (e.key === "Escape") { toggleHelp(false); }
    else if (e.key === "/") {
      var box = document.getElementById("composer-body");
      if (box && !box.disabled) {
        e.preventDefault(); box.focus(); box.value = "/"; searchCanned(box); updateCounter();
      }
    } else if (e.key === "c") {
      var close = document.getElementById("close-form");
      if (close) { htmx.trigger(close, "submit"); e.preventDefault(); }
    } else if (e.key === "t") {
      var tag = document.getElementById("tag-input");
      if (tag) { tag.focus(); e.preventDefault(); }
    } else if (e.key === "a") {
      // The survey: the first option of the first unanswered question (else of the first).
      var option = document.querySelector("#survey .survey-q.unanswered .survey-option") ||
        document.querySelector("#survey .survey-option");
      if (option) { option.focus(); e.preventDefault(); }
    }
  });

  document.addEventListener("input", function (e) {
    if (!e.target || e.target.id !== "composer-body") return;
    updateCounter();
    if (e.target.value.startsWith("/")) searchCanned(e.target);
    else if (picker.open) closePicker();
  });

  function scrollThread() {
    var list = document.getElementById("messages");
    if (list) list.scrollTop = list.scrollHeight;
  }

  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.target && e.target.id === "thread") {
      scrollThread();
      updateCounter();
      var id = openId();
      document.querySelectorAll("#conv-list .conv").forEach(function (li) {
        li.classList.toggle("current", li.getAttribute("data-id") === id);
      });
      if (id && history.replaceState) {
        var q = filters();
        history.replaceState(null, "", "/inbox?" + (q ? q + "&" : "") + "c=" + id);
      }
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    connect();
    scrollThread();
    updateCounter();
  });
})();
