/* onduty chat widget. Plain JavaScript, no build step.
   Embed: <script src="https://HOST/widget.js" data-property="acme" async></script>
   It talks to the HOST it was loaded from. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src) return;
  var prop = script.getAttribute("data-property");
  if (!prop || document.getElementById("onduty-root")) return;
  var base = new URL(script.src, location.href).origin;
  var api = base + "/v1";
  var KEY = "onduty:" + prop;
  var NAMES = { online: "Online", away: "Away", offline: "Offline" };

  var status = null;   // last widget status {property,status,mode,greeting}
  var chat = restore(); // {id, token, last} of the open chat, or null
  var chatES = null, statusES = null;
  var seen = {};
  var agentName = "";
  var chatRetry = 0, statusRetry = 0, reconnecting = false;

  // ---- DOM -----------------------------------------------------------------
  var css =
    ".onduty-root{position:fixed;right:20px;bottom:20px;z-index:2147483000;font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#111}" +
    ".onduty-root [hidden]{display:none!important}" +
    ".onduty-root button,.onduty-root input,.onduty-root textarea{font:inherit}" +
    ".onduty-launcher{display:flex;align-items:center;gap:8px;margin-left:auto;padding:10px 16px;border:0;border-radius:24px;background:#1f2937;color:#fff;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25)}" +
    ".onduty-launcher:focus-visible,.onduty-root button:focus-visible,.onduty-root input:focus-visible,.onduty-root textarea:focus-visible{outline:3px solid #2563eb;outline-offset:2px}" +
    ".onduty-dot{display:inline-block;width:10px;height:10px;border-radius:50%;background:#9ca3af;flex:none}" +
    ".onduty-dot[data-status=online]{background:#22c55e}.onduty-dot[data-status=away]{background:#f59e0b}" +
    ".onduty-panel{position:absolute;right:0;bottom:56px;width:340px;max-width:calc(100vw - 40px);max-height:70vh;display:flex;flex-direction:column;background:#fff;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.3);overflow:hidden}" +
    ".onduty-head{display:flex;align-items:center;gap:8px;padding:12px 14px;background:#1f2937;color:#fff}" +
    ".onduty-head h2{flex:1;margin:0;font-size:15px}" +
    ".onduty-close{border:0;background:none;color:#fff;font-size:20px;line-height:1;cursor:pointer;padding:2px 6px}" +
    ".onduty-greeting{margin:0;padding:10px 14px;background:#f3f4f6}" +
    ".onduty-view{display:flex;flex-direction:column;min-height:0;flex:1}" +
    ".onduty-log{flex:1;overflow-y:auto;padding:10px 14px;min-height:120px}" +
    ".onduty-msg{margin:6px 0;padding:7px 10px;border-radius:10px;width:fit-content;max-width:85%;white-space:pre-wrap;word-wrap:break-word}" +
    ".onduty-from-visitor{margin-left:auto;background:#2563eb;color:#fff}" +
    ".onduty-from-agent{background:#e5e7eb}" +
    ".onduty-from-system{width:auto;max-width:none;background:none;color:#555;font-style:italic;text-align:center}" +
    ".onduty-name{display:block;font-size:12px;font-weight:600}" +
    ".onduty-form{display:flex;flex-direction:column;gap:6px;padding:10px 14px;border-top:1px solid #e5e7eb}" +
    ".onduty-form input,.onduty-form textarea{padding:7px;border:1px solid #9ca3af;border-radius:6px;resize:vertical}" +
    ".onduty-row{display:flex;gap:6px}.onduty-row textarea{flex:1}" +
    ".onduty-btn{padding:7px 12px;border:0;border-radius:6px;background:#2563eb;color:#fff;cursor:pointer}" +
    ".onduty-btn:disabled{opacity:.6;cursor:default}" +
    ".onduty-link{align-self:flex-start;border:0;background:none;color:#2563eb;text-decoration:underline;cursor:pointer;padding:0}" +
    ".onduty-error{margin:0;color:#b91c1c}" +
    ".onduty-file{display:block;color:inherit;text-decoration:underline}.onduty-file img{display:block;max-width:100%;max-height:200px;margin-bottom:4px;border-radius:6px}" +
    ".onduty-attach{padding:7px 10px;border:1px solid #9ca3af;border-radius:6px;background:#fff;cursor:pointer}" +
    ".onduty-sr{position:absolute!important;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}";

  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    for (var k in attrs) {
      if (k === "text") e.textContent = attrs[k];
      else if (attrs[k] === true) e.setAttribute(k, "");
      else if (attrs[k] !== false && attrs[k] != null) e.setAttribute(k, attrs[k]);
    }
    (kids || []).forEach(function (c) { e.appendChild(c); });
    return e;
  }

  var style = el("style", { text: css });
  var dot = el("span", { "class": "onduty-dot", "data-status": "offline", "aria-hidden": "true" });
  var launcherLabel = el("span", { id: "onduty-launcher-label", text: "Chat" });
  var launcher = el("button", { id: "onduty-launcher", "class": "onduty-launcher", type: "button", "aria-expanded": "false", "aria-controls": "onduty-panel" }, [dot, launcherLabel]);

  var headDot = el("span", { "class": "onduty-dot", "data-status": "offline", "aria-hidden": "true" });
  var title = el("h2", { id: "onduty-title", text: "Chat" });
  var closeBtn = el("button", { id: "onduty-close", "class": "onduty-close", type: "button", "aria-label": "Close chat window", text: "\u00d7" });
  var greeting = el("p", { id: "onduty-greeting", "class": "onduty-greeting" });

  var log = el("div", { id: "onduty-messages", "class": "onduty-log", role: "log", "aria-live": "polite", "aria-relevant": "additions", "aria-label": "Messages" });
  var nameInput = el("input", { id: "onduty-name", type: "text", autocomplete: "name", maxlength: "200" });
  var intro = el("div", { id: "onduty-intro", "class": "onduty-view" }, [el("label", { "for": "onduty-name", text: "Your name (optional)" }), nameInput]);
  var input = el("textarea", { id: "onduty-input", rows: "2", maxlength: "4000", required: true });
  var sendBtn = el("button", { id: "onduty-send", "class": "onduty-btn", type: "submit", text: "Send" });
  var fileInput = el("input", { id: "onduty-file", type: "file", "class": "onduty-sr", tabindex: "-1", "aria-hidden": "true" });
  var attachBtn = el("button", { id: "onduty-attach", "class": "onduty-attach", type: "button", "aria-label": "Send a file", title: "Send a file", text: "\ud83d\udcce", hidden: true });
  var chatError = el("p", { id: "onduty-error", "class": "onduty-error", role: "alert" });
  var endBtn = el("button", { id: "onduty-end", "class": "onduty-link", type: "button", text: "End chat", hidden: true });
  var chatForm = el("form", { id: "onduty-chat-form", "class": "onduty-form", novalidate: true }, [
    intro, el("label", { "for": "onduty-input", "class": "onduty-sr", text: "Message" }),
    el("div", { "class": "onduty-row" }, [input, attachBtn, sendBtn]), fileInput, chatError, endBtn]);
  var chatView = el("div", { id: "onduty-chat-view", "class": "onduty-view" }, [log, chatForm]);

  var offName = el("input", { id: "onduty-off-name", type: "text", autocomplete: "name", maxlength: "200" });
  var offEmail = el("input", { id: "onduty-off-email", type: "email", autocomplete: "email", required: true, maxlength: "254" });
  var offText = el("textarea", { id: "onduty-off-text", rows: "4", maxlength: "4000", required: true });
  var offSend = el("button", { id: "onduty-off-send", "class": "onduty-btn", type: "submit", text: "Send message" });
  var offError = el("p", { id: "onduty-off-error", "class": "onduty-error", role: "alert" });
  var offForm = el("form", { id: "onduty-offline-form", "class": "onduty-form", novalidate: true }, [
    el("label", { "for": "onduty-off-name", text: "Name" }), offName,
    el("label", { "for": "onduty-off-email", text: "Email (required)" }), offEmail,
    el("label", { "for": "onduty-off-text", text: "Message (required)" }), offText,
    offError, offSend]);
  var offDone = el("p", { id: "onduty-off-done", "class": "onduty-greeting", role: "status", hidden: true, text: "Thanks! We got your message and will reply by email." });
  var offView = el("div", { id: "onduty-offline-view", "class": "onduty-view", hidden: true }, [offForm, offDone]);

  var panel = el("div", { id: "onduty-panel", "class": "onduty-panel", role: "dialog", "aria-labelledby": "onduty-title", hidden: true }, [
    el("div", { "class": "onduty-head" }, [headDot, title, closeBtn]), greeting, chatView, offView]);
  var root = el("div", { id: "onduty-root", "class": "onduty-root", hidden: true }, [style, panel, launcher]);

  // ---- helpers -------------------------------------------------------------
  function restore() {
    try { var c = JSON.parse(sessionStorage.getItem(KEY) || "null"); return c && c.id && c.token ? c : null; } catch (e) { return null; }
  }
  function save() {
    try { if (chat) sessionStorage.setItem(KEY, JSON.stringify(chat)); else sessionStorage.removeItem(KEY); } catch (e) { /* storage off */ }
  }
  // A random id kept in this browser, sent with new chats so that a block
  // (/block) follows the visitor beyond one chat and one address.
  function visitorID() {
    var v = "";
    try { v = localStorage.getItem("onduty:vid") || ""; } catch (e) { /* storage off */ }
    if (!/^[A-Za-z0-9_-]{16,64}$/.test(v)) {
      var b = new Uint8Array(16); crypto.getRandomValues(b);
      v = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
      try { localStorage.setItem("onduty:vid", v); } catch (e) { /* storage off */ }
    }
    return v;
  }
  function idParts(id) { var p = String(id).split("-"); return [Number(p[0]) || 0, Number(p[1]) || 0]; }
  function idAfter(a, b) { if (!b) return true; var x = idParts(a), y = idParts(b); return x[0] > y[0] || (x[0] === y[0] && x[1] > y[1]); }

  function request(method, path, body, token) {
    var h = {};
    if (body) h["Content-Type"] = "application/json";
    if (token) h["Authorization"] = "Bearer " + token;
    return fetch(api + path, { method: method, headers: h, body: body ? JSON.stringify(body) : undefined, mode: "cors", credentials: "omit" })
      .then(function (r) {
        return r.text().then(function (t) {
          var data = null;
          try { data = t ? JSON.parse(t) : null; } catch (e) { /* not JSON */ }
          if (!r.ok) {
            var err = new Error(data && data.error ? data.error.message : "Something went wrong (" + r.status + ")");
            err.status = r.status;
            err.code = data && data.error ? data.error.code : "";
            throw err;
          }
          return data;
        });
      });
  }
  function explain(e) {
    if (e.status === 429) return "You're sending messages too fast. Please wait a moment.";
    if (!e.status) return "We can't reach the chat right now. Check your connection and try again.";
    return e.message;
  }

  // ---- status --------------------------------------------------------------
  function setStatus(st) {
    if (!st || !st.status) return;
    status = st;
    dot.setAttribute("data-status", st.status);
    headDot.setAttribute("data-status", st.status);
    var name = NAMES[st.status] || st.status;
    launcherLabel.textContent = "Chat \u00b7 " + name;
    launcher.setAttribute("aria-label", "Open chat, we are " + name.toLowerCase());
    title.textContent = "Chat \u00b7 " + name;
    greeting.textContent = st.greeting || "";
    render();
  }

  function render() {
    var offline = status && status.status === "offline";
    root.hidden = !status || (offline && status.mode === "hidden" && !chat);
    var form = offline && status.mode === "form" && !chat;
    chatView.hidden = form;
    offView.hidden = !form;
    intro.hidden = !!chat;
    endBtn.hidden = !chat;
    attachBtn.hidden = !chat;
    if (root.hidden && !panel.hidden) toggle(false);
  }

  function followStatus() {
    // The GET answers fast on a slow stream; once the stream has spoken, a
    // late GET answer is older than what it said and is dropped.
    var streamed = false;
    request("GET", "/properties/" + encodeURIComponent(prop) + "/status").then(function (st) { if (!streamed) setStatus(st); }, function () { /* the stream will tell */ });
    statusES = new EventSource(api + "/properties/" + encodeURIComponent(prop) + "/status/stream");
    statusES.addEventListener("status", function (e) { streamed = true; statusRetry = 0; setStatus(JSON.parse(e.data)); });
    statusES.onerror = function () {
      if (statusES.readyState !== 2) return; // the browser reconnects by itself
      statusES.close();
      setTimeout(followStatus, Math.min(30000, 1000 * Math.pow(2, statusRetry++)));
    };
  }

  // ---- chat ----------------------------------------------------------------
  function line(cls, text, name, id, att) {
    var m = el("div", { "class": "onduty-msg onduty-from-" + cls, "data-id": id || null });
    if (name) m.appendChild(el("span", { "class": "onduty-name", text: name }));
    if (att && chat) {
      // The file is the chat's: fetched with the visitor's token.
      var href = api + "/chats/" + chat.id + "/files/" + encodeURIComponent(att.key) + "?token=" + encodeURIComponent(chat.token);
      var a = el("a", { "class": "onduty-file", href: href, target: "_blank", rel: "noopener", text: "\ud83d\udcce " + att.name });
      if (/^image\/(png|jpeg|gif|webp)$/.test(att.mime)) a.insertBefore(el("img", { src: href, alt: att.name }), a.firstChild);
      m.appendChild(a);
    }
    m.appendChild(document.createTextNode(text));
    return m;
  }

  // addMessage shows a message once. local: our own message as the POST
  // answered it; it does not move chat.last, which marks how far the event
  // stream and transcript have delivered (an agent message stored just before
  // ours may still be on its way).
  function addMessage(m, local) {
    if (!m || !m.id || seen[m.id] || m.note) return;
    seen[m.id] = true;
    var node = line(m.from === "visitor" ? "visitor" : m.from === "agent" ? "agent" : "system", m.text || "", m.from === "agent" ? (m.name || "Agent") : "", m.id, m.attachment);
    // Keep transcript order even when a replay and a live event cross.
    var after = null;
    for (var c = log.lastChild; c; c = c.previousSibling) {
      var cid = c.getAttribute("data-id");
      if (cid && idAfter(cid, m.id)) after = c; else if (cid) break;
    }
    log.insertBefore(node, after);
    log.scrollTop = log.scrollHeight;
    if (chat && !local && idAfter(m.id, chat.last)) { chat.last = m.id; save(); }
  }

  function system(text) { log.appendChild(line("system", text)); log.scrollTop = log.scrollHeight; }

  function loadTranscript(all) {
    if (!chat) return;
    var c = chat;
    request("GET", "/chats/" + c.id + "/messages" + (c.last && !all ? "?after=" + encodeURIComponent(c.last) : ""), null, c.token)
      .then(function (d) { if (chat === c) (d.messages || []).forEach(function (m) { addMessage(m); }); }, function (e) {
        if (chat === c && (e.status === 401 || e.status === 403 || e.status === 404)) forget("This chat is no longer available.");
      });
  }

  function connectChat() {
    if (!chat) return;
    var c = chat;
    if (chatES) chatES.close();
    var url = api + "/chats/" + c.id + "/events?token=" + encodeURIComponent(c.token) + (c.last ? "&last_event_id=" + encodeURIComponent(c.last) : "");
    var es = chatES = new EventSource(url);
    es.addEventListener("open", function () {
      if (reconnecting) loadTranscript();
      reconnecting = false;
      chatRetry = 0;
    });
    es.addEventListener("message", function (e) { addMessage(JSON.parse(e.data).message); });
    es.addEventListener("agent_joined", function (e) {
      var d = JSON.parse(e.data);
      if (d.agent && d.agent !== agentName) { agentName = d.agent; system(d.agent + " joined the chat."); }
    });
    es.addEventListener("chat_closed", function () { ended("The chat has ended."); });
    es.addEventListener("status", function (e) { setStatus(JSON.parse(e.data)); });
    es.onerror = function () {
      reconnecting = true;
      if (es.readyState !== 2 || chatES !== es) return; // the browser reconnects by itself
      es.close();
      chatES = null;
      setTimeout(function () { if (chat === c) { loadTranscript(); connectChat(); } }, Math.min(30000, 1000 * Math.pow(2, chatRetry++)));
    };
  }

  function ended(text) {
    if (chatES) { chatES.close(); chatES = null; }
    chat = null;
    agentName = "";
    save();
    system(text);
    render();
  }
  function forget(text) { ended(text); }

  function send(text) {
    chatError.textContent = "";
    sendBtn.disabled = true;
    var done = function () { sendBtn.disabled = false; };
    if (!chat) {
      return request("POST", "/properties/" + encodeURIComponent(prop) + "/chats", { name: nameInput.value.trim(), message: text, page_url: location.href, visitor_id: visitorID() })
        .then(function (d) {
          log.textContent = "";
          seen = {};
          chat = { id: d.chat_id, token: d.visitor_token, last: "" };
          save();
          render();
          connectChat();
          loadTranscript();
          input.value = "";
        }, function (e) { chatError.textContent = explain(e); })
        .then(done);
    }
    var c = chat;
    return request("POST", "/chats/" + c.id + "/messages", { text: text }, c.token)
      .then(function (d) {
        addMessage({ id: d.id, from: "visitor", text: text }, true);
        input.value = "";
      }, function (e) {
        if (e.status === 409 || e.status === 403 || e.status === 404) { ended("The chat has ended. Send again to start a new one."); return; }
        chatError.textContent = explain(e);
      })
      .then(done);
  }

  // A file goes with the text typed so far as its caption.
  attachBtn.addEventListener("click", function () { fileInput.click(); });
  fileInput.addEventListener("change", function () {
    var f = fileInput.files && fileInput.files[0], c = chat;
    fileInput.value = "";
    if (!f || !c) return;
    if (f.size > 5 * 1024 * 1024) { chatError.textContent = "Files are limited to 5 MB."; return; }
    var text = input.value.trim() ? input.value : "";
    var form = new FormData();
    form.append("file", f, f.name);
    if (text) form.append("text", text);
    chatError.textContent = "";
    attachBtn.disabled = sendBtn.disabled = true;
    fetch(api + "/chats/" + c.id + "/files", { method: "POST", headers: { Authorization: "Bearer " + c.token }, body: form, mode: "cors", credentials: "omit" })
      .then(function (r) {
        return r.json().then(null, function () { return null; }).then(function (d) {
          if (!r.ok) { var err = new Error(d && d.error ? d.error.message : "Something went wrong (" + r.status + ")"); err.status = r.status; throw err; }
          addMessage({ id: d.id, from: "visitor", text: text, attachment: d.attachment }, true);
          if (text) input.value = "";
        });
      })
      .then(null, function (e) { chatError.textContent = explain(e); })
      .then(function () { attachBtn.disabled = sendBtn.disabled = false; });
  });

  chatForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value;
    if (!text.trim()) { chatError.textContent = "Please write a message."; input.focus(); return; }
    if (text.length > 4000) { chatError.textContent = "Messages are limited to 4000 characters."; return; }
    send(text);
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); chatForm.requestSubmit ? chatForm.requestSubmit() : chatForm.dispatchEvent(new Event("submit")); }
  });
  endBtn.addEventListener("click", function () {
    var c = chat;
    if (!c) return;
    request("POST", "/chats/" + c.id + "/close", {}, c.token).then(null, function () { /* closed anyway for us */ });
    ended("You ended the chat.");
  });

  offForm.addEventListener("submit", function (e) {
    e.preventDefault();
    offError.textContent = "";
    if (!offEmail.value.trim() || !offEmail.checkValidity()) { offError.textContent = "Please enter your email address."; offEmail.focus(); return; }
    if (!offText.value.trim()) { offError.textContent = "Please write a message."; offText.focus(); return; }
    offSend.disabled = true;
    request("POST", "/properties/" + encodeURIComponent(prop) + "/offline-messages", { name: offName.value.trim(), email: offEmail.value.trim(), text: offText.value, visitor_id: visitorID() })
      .then(function () { offForm.hidden = true; offDone.hidden = false; offDone.setAttribute("tabindex", "-1"); offDone.focus(); },
        function (err) { offError.textContent = explain(err); })
      .then(function () { offSend.disabled = false; });
  });

  // ---- open / close --------------------------------------------------------
  function toggle(show) {
    panel.hidden = !show;
    launcher.setAttribute("aria-expanded", show ? "true" : "false");
    if (show) (offView.hidden ? input : offEmail).focus();
  }
  launcher.addEventListener("click", function () { toggle(panel.hidden); });
  closeBtn.addEventListener("click", function () { toggle(false); launcher.focus(); });
  root.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && !panel.hidden) { toggle(false); launcher.focus(); }
  });

  function start() {
    document.body.appendChild(root);
    followStatus();
    if (chat) { render(); loadTranscript(true); connectChat(); }
  }
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);

  // For tests and hosts: the widget's state.
  window.onduty = { property: prop, status: function () { return status; }, chat: function () { return chat && chat.id; } };
})();
