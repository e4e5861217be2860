/* onduty chat widget. Plain JavaScript, no build step.
   Embed: <script src="https://HOST/widget.js" data-property="acme" async></script>
   It talks to the HOST it was loaded from. The continue page adds
   data-chat="CHAT_ID" and carries the visitor token in location.hash. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src) return;
  var prop = script.getAttribute("data-property");
  if (!prop || document.getElementById("onduty-root")) return;
  var base = new URL(script.src, location.href).origin;
  var api = base + "/v1";
  var P = encodeURIComponent(prop);
  var KEY = "onduty:" + prop, MUTE = "onduty:mute";
  var POLL = 30000; // status polling while the status stream is refused

  // Labels: en, de, fr, es, ru. "{}" is filled in.
  var LABELS = {
    en: {
      chat: "Chat", online: "Online", away: "Away", offline: "Offline", unread: "{} unread",
      closeW: "Close chat window", name: "Your name", email: "Your email", opt: "optional", req: "required",
      msg: "Message", ph: "Write a message…", send: "Send", file: "Send a file", end: "End chat",
      wait: "Waiting for an agent to join…", later: "We'll reply here as soon as we can.",
      joined: "{} joined the chat.", ended: "The chat has ended.",
      fast: "Too fast. Please wait a moment.",
      net: "Can't reach the chat. Check your connection.",
      write: "Please write a message.", big: "5 MB max.",
      needEmail: "Please enter your email address.", needName: "Please enter your name.", needConsent: "Please tick the box to continue.",
      offSend: "Send message", thanks: "Thanks! We got your message.",
      thanksMail: "We'll answer by email, and here when you come back.", thanksHere: "Come back to this page to see our answer.",
      rate: "How was this chat?", star: "{} of 5", comment: "Anything to add? (optional)", rateSend: "Send rating",
      rated: "Thanks for your feedback!", mailT: "Email me the transcript", mailed: "The transcript is on its way to your inbox.",
      noEmail: "We have no email address for this chat.", mute: "Mute sounds"
    },
    de: {
      chat: "Chat", online: "Online", away: "Abwesend", offline: "Offline", unread: "{} ungelesen",
      closeW: "Chatfenster schließen", name: "Ihr Name", email: "Ihre E-Mail-Adresse", opt: "optional", req: "erforderlich",
      msg: "Nachricht", ph: "Nachricht schreiben…", send: "Senden", file: "Datei senden", end: "Chat beenden",
      wait: "Wir verbinden Sie mit einem Mitarbeiter…", later: "Wir antworten hier, sobald wir können.",
      joined: "{} ist dem Chat beigetreten.", ended: "Der Chat wurde beendet.",
      fast: "Zu schnell. Bitte warten Sie kurz.",
      net: "Chat nicht erreichbar. Prüfen Sie Ihre Verbindung.",
      write: "Bitte schreiben Sie eine Nachricht.", big: "Max. 5 MB.",
      needEmail: "Bitte geben Sie Ihre E-Mail-Adresse ein.", needName: "Bitte geben Sie Ihren Namen ein.", needConsent: "Bitte setzen Sie das Häkchen, um fortzufahren.",
      offSend: "Nachricht senden", thanks: "Danke! Ihre Nachricht ist angekommen.",
      thanksMail: "Wir antworten per E-Mail und hier, wenn Sie wiederkommen.", thanksHere: "Kommen Sie auf diese Seite zurück, um unsere Antwort zu sehen.",
      rate: "Wie war dieser Chat?", star: "{} von 5", comment: "Möchten Sie etwas ergänzen? (optional)", rateSend: "Bewertung senden",
      rated: "Danke für Ihr Feedback!", mailT: "Verlauf per E-Mail senden", mailed: "Der Verlauf ist unterwegs in Ihr Postfach.",
      noEmail: "Für diesen Chat ist keine E-Mail-Adresse hinterlegt.", mute: "Töne aus"
    },
    fr: {
      chat: "Chat", online: "En ligne", away: "Absent", offline: "Hors ligne", unread: "{} non lu(s)",
      closeW: "Fermer la fenêtre de chat", name: "Votre nom", email: "Votre e-mail", opt: "facultatif", req: "obligatoire",
      msg: "Message", ph: "Écrivez un message…", send: "Envoyer", file: "Envoyer un fichier", end: "Terminer le chat",
      wait: "En attente d’un conseiller…", later: "Nous répondrons ici dès que possible.",
      joined: "{} a rejoint le chat.", ended: "Le chat est terminé.",
      fast: "Trop rapide. Patientez un instant.",
      net: "Chat injoignable. Vérifiez votre connexion.",
      write: "Veuillez écrire un message.", big: "5 Mo max.",
      needEmail: "Veuillez saisir votre adresse e-mail.", needName: "Veuillez saisir votre nom.", needConsent: "Veuillez cocher la case pour continuer.",
      offSend: "Envoyer le message", thanks: "Merci ! Nous avons bien reçu votre message.",
      thanksMail: "Nous vous répondrons par e-mail, et ici à votre retour.", thanksHere: "Revenez sur cette page pour voir notre réponse.",
      rate: "Comment s’est passé ce chat ?", star: "{} sur 5", comment: "Un commentaire ? (facultatif)", rateSend: "Envoyer la note",
      rated: "Merci pour votre avis !", mailT: "Recevoir la conversation par e-mail", mailed: "La conversation arrive dans votre boîte mail.",
      noEmail: "Nous n’avons pas d’adresse e-mail pour ce chat.", mute: "Couper le son"
    },
    es: {
      chat: "Chat", online: "En línea", away: "Ausente", offline: "Desconectado", unread: "{} sin leer",
      closeW: "Cerrar la ventana del chat", name: "Tu nombre", email: "Tu correo electrónico", opt: "opcional", req: "obligatorio",
      msg: "Mensaje", ph: "Escribe un mensaje…", send: "Enviar", file: "Enviar un archivo", end: "Terminar el chat",
      wait: "Esperando a un agente…", later: "Te responderemos aquí lo antes posible.",
      joined: "{} se unió al chat.", ended: "El chat ha terminado.",
      fast: "Demasiado rápido. Espera un momento.",
      net: "No hay conexión con el chat. Revisa tu conexión.",
      write: "Escribe un mensaje.", big: "Máx. 5 MB.",
      needEmail: "Introduce tu correo electrónico.", needName: "Introduce tu nombre.", needConsent: "Marca la casilla para continuar.",
      offSend: "Enviar mensaje", thanks: "¡Gracias! Hemos recibido tu mensaje.",
      thanksMail: "Te responderemos por correo, y aquí cuando vuelvas.", thanksHere: "Vuelve a esta página para ver nuestra respuesta.",
      rate: "¿Qué tal fue este chat?", star: "{} de 5", comment: "¿Algo que añadir? (opcional)", rateSend: "Enviar valoración",
      rated: "¡Gracias por tu opinión!", mailT: "Enviarme la conversación por correo", mailed: "La conversación va de camino a tu correo.",
      noEmail: "No tenemos tu correo para este chat.", mute: "Silenciar"
    },
    ru: {
      chat: "Чат", online: "В сети", away: "Отошли", offline: "Не в сети", unread: "непрочитанных: {}",
      closeW: "Закрыть окно чата", name: "Ваше имя", email: "Ваш e-mail", opt: "необязательно", req: "обязательно",
      msg: "Сообщение", ph: "Напишите сообщение…", send: "Отправить", file: "Отправить файл", end: "Завершить чат",
      wait: "Ждём оператора…", later: "Мы ответим здесь, как только сможем.",
      joined: "{} подключается к чату.", ended: "Чат завершён.",
      fast: "Слишком часто. Подождите немного.",
      net: "Чат недоступен. Проверьте подключение.",
      write: "Напишите сообщение.", big: "Не больше 5 МБ.",
      needEmail: "Укажите ваш e-mail.", needName: "Укажите ваше имя.", needConsent: "Отметьте галочку, чтобы продолжить.",
      offSend: "Отправить сообщение", thanks: "Спасибо! Мы получили ваше сообщение.",
      thanksMail: "Мы ответим по e-mail и здесь, когда вы вернётесь.", thanksHere: "Вернитесь на эту страницу, чтобы увидеть ответ.",
      rate: "Как прошёл чат?", star: "{} из 5", comment: "Хотите что-то добавить? (необязательно)", rateSend: "Отправить оценку",
      rated: "Спасибо за отзыв!", mailT: "Прислать переписку на e-mail", mailed: "Переписка отправлена на ваш e-mail.",
      noEmail: "Для этого чата нет e-mail.", mute: "Выключить звук"
    }
  };
  var L = LABELS.en;
  function t(k, a) { var s = L[k] || LABELS.en[k]; return a == null ? s : s.replace("{}", a); }

  var status = null;    // last widget status {property,status,mode,greeting,widget?,email?,prechat?}
  var stored = null;    // the storage, or null where it is off
  try { stored = window.localStorage; } catch (e) { /* off */ }
  var chat = restore(); // {id, token, last, read, agent, email} of the open chat, or null
  var readId = chat ? chat.read || "" : ""; // newest agent message the visitor has seen
  var closed = null;    // the chat that just ended: rating and transcript
  var chatES = null, statusES = null, pollTimer = 0;
  var seen = {};
  var chatRetry = 0, streamRetry = 0, reconnecting = false;
  var offSent = false, openAtStart = false;
  var interacted = false, actx = null, sounds = 0;

  // A continue link (/c/{chat}#{token}) hands the chat over; the token leaves
  // the address bar at once.
  var adopt = script.getAttribute("data-chat");
  if (adopt && location.hash.length > 1) {
    chat = { id: adopt, token: decodeURIComponent(location.hash.slice(1)), last: "", read: "" };
    readId = "";
    save();
    history.replaceState(null, "", location.pathname + location.search);
    openAtStart = true;
  }

  // ---- DOM -----------------------------------------------------------------
  var css =
    ".onduty-root{--c:#1f6feb;--t:#fff;position:fixed;right:20px;bottom:20px;z-index:2147483000;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#111827;text-align:start}" +
    ".onduty-root.onduty-left{right:auto;left:20px}.onduty-root[dir=rtl] .onduty-send svg{transform:scaleX(-1)}" +
    ".onduty-root *{box-sizing:border-box}.onduty-root [hidden]{display:none!important}" +
    ".onduty-root button,.onduty-root input,.onduty-root textarea{font:inherit}.onduty-root input,.onduty-root textarea,.onduty-icon{color:inherit}" +
    ".onduty-root svg{width:20px;height:20px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round;flex:none}" +
    ".onduty-root :focus-visible{outline:3px solid #2563eb;outline-offset:2px}.onduty-head :focus-visible{outline-color:currentColor}" +
    ".onduty-launcher{position:relative;display:grid;place-items:center;width:60px;height:60px;margin:0;padding:0;border:0;border-radius:50%;background:var(--c);color:var(--t);cursor:pointer;box-shadow:0 6px 20px rgba(0,0,0,.25);transition:transform .15s}" +
    ".onduty-launcher:hover{transform:scale(1.06)}.onduty-launcher svg{width:28px;height:28px}" +
    ".onduty-launcher .onduty-dot{position:absolute;right:1px;bottom:1px;width:15px;height:15px;border:2px solid #fff}" +
    ".onduty-badge{position:absolute;top:-5px;right:-5px;min-width:22px;height:22px;padding:0 6px;border:2px solid #fff;border-radius:11px;background:#dc2626;color:#fff;font-size:12px;font-weight:700;line-height:18px;text-align:center}" +
    ".onduty-dot{display:inline-block;width:9px;height:9px;border-radius:50%;background:#9ca3af;flex:none}" +
    ".onduty-dot[data-status=online]{background:#22c55e}.onduty-dot[data-status=away]{background:#f59e0b}" +
    ".onduty-panel{position:absolute;right:0;bottom:76px;width:370px;max-width:calc(100vw - 40px);height:min(600px,calc(100vh - 110px));display:flex;flex-direction:column;background:#fff;border-radius:16px;box-shadow:0 12px 40px rgba(0,0,0,.25);overflow:hidden}" +
    ".onduty-left .onduty-panel{right:auto;left:0}" +
    ".onduty-head{display:flex;align-items:center;gap:10px;padding:14px;padding-inline-end:10px;background:var(--c);color:var(--t)}" +
    ".onduty-hd{flex:1;min-width:0}.onduty-head h2{margin:0;font-size:16px;font-weight:600;line-height:1.25;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}" +
    ".onduty-sub{display:flex;align-items:center;gap:6px;font-size:12.5px;opacity:.92}" +
    ".onduty-icon{display:grid;place-items:center;width:36px;height:36px;padding:0;border:0;border-radius:8px;background:none;cursor:pointer}" +
    ".onduty-icon:hover{background:rgba(127,127,127,.22)}" +
    ".onduty-av{display:grid;place-items:center;width:30px;height:30px;border-radius:50%;background:#e0e7ff;color:#3730a3;font-size:12px;font-weight:700;flex:none}" +
    ".onduty-head .onduty-av{width:40px;height:40px;background:rgba(127,127,127,.28);color:inherit;font-size:14px}" +
    ".onduty-greeting{margin:0;padding:12px 16px;background:#f3f4f6;color:#374151;font-size:13.5px}" +
    ".onduty-wait{display:flex;align-items:center;gap:10px;margin:0;padding:10px 16px;background:#fffbeb;color:#92400e;font-size:13px;border-bottom:1px solid #fde68a}" +
    ".onduty-spin{width:16px;height:16px;border:2px solid currentColor;border-right-color:transparent;border-radius:50%;animation:onduty-spin 1s linear infinite;flex:none}" +
    "@keyframes onduty-spin{to{transform:rotate(360deg)}}@media (prefers-reduced-motion:reduce){.onduty-spin{animation:none}}" +
    ".onduty-view{display:flex;flex-direction:column;min-height:0;flex:1}" +
    ".onduty-log{flex:1;min-height:120px;overflow-y:auto;padding:10px 12px;background:#f9fafb}" +
    ".onduty-msg{display:flex;align-items:flex-end;gap:8px;margin:8px 0}" +
    ".onduty-bubble{max-width:78%;padding:8px 12px;border-radius:16px;white-space:pre-wrap;overflow-wrap:anywhere;unicode-bidi:plaintext}" +
    ".onduty-from-visitor{flex-direction:row-reverse}" +
    ".onduty-from-visitor .onduty-bubble{background:var(--c);color:var(--t);border-end-end-radius:4px}" +
    ".onduty-from-agent .onduty-bubble{background:#fff;border:1px solid #e5e7eb;border-end-start-radius:4px}" +
    ".onduty-from-system{justify-content:center}.onduty-from-system .onduty-bubble{max-width:92%;padding:2px 8px;color:#6b7280;font-size:12.5px;text-align:center}" +
    ".onduty-name{display:block;font-size:12px;font-weight:600;color:#4b5563}" +
    ".onduty-time{display:block;margin-top:2px;font-size:11px;opacity:.75;text-align:end}" +
    ".onduty-form{display:flex;flex-direction:column;gap:6px;padding:10px 12px;border-top:1px solid #e5e7eb;background:#fff}" +
    ".onduty-form label{font-size:12.5px;color:#374151}" +
    ".onduty-field{width:100%;padding:8px 10px;border:1px solid #d1d5db;border-radius:8px;background:#fff}.onduty-root .onduty-field:focus{outline:2px solid var(--c);outline-offset:-1px}" +
    ".onduty-row{display:flex;align-items:flex-end;gap:6px}.onduty-row textarea{flex:1;resize:none}" +
    ".onduty-send{display:grid;place-items:center;width:40px;height:40px;padding:0;border:0;border-radius:50%;background:var(--c);color:var(--t);cursor:pointer}" +
    ".onduty-attach{display:grid;place-items:center;width:40px;height:40px;padding:0;border:0;border-radius:50%;background:none;color:#4b5563;cursor:pointer}" +
    ".onduty-btn{padding:9px 14px;border:0;border-radius:8px;background:var(--c);color:var(--t);font-weight:600;cursor:pointer}" +
    ".onduty-root button:disabled{opacity:.55;cursor:default}" +
    ".onduty-link{align-self:flex-start;padding:0;border:0;background:none;color:#4b5563;font-size:12.5px;text-decoration:underline;cursor:pointer}" +
    ".onduty-error{margin:0;color:#b91c1c;font-size:12.5px}.onduty-error:empty{display:none}" +
    ".onduty-form .onduty-check{display:flex;gap:8px;align-items:flex-start}" +
    ".onduty-after{display:flex;flex-direction:column;gap:8px;padding:12px;border-top:1px solid #e5e7eb;text-align:center}" +
    ".onduty-after p{margin:0}.onduty-stars{display:flex;justify-content:center;gap:2px}" +
    ".onduty-star{padding:2px;border:0;background:none;color:#d1d5db;cursor:pointer}.onduty-star svg{width:30px;height:30px;fill:currentColor;stroke:none}" +
    ".onduty-star[aria-pressed=true]{color:#f59e0b}" +
    ".onduty-done{margin:0;padding:16px;font-size:14px}.onduty-bare{padding:0;border:0}.onduty-form.onduty-bare{padding:12px;border:0}.onduty-intro{gap:6px}.onduty-mid{align-self:center}.onduty-note{color:#374151}.onduty-scroll{overflow-y:auto}" +
    ".onduty-file{display:block;color:inherit;text-decoration:underline}.onduty-file img{display:block;max-width:100%;max-height:200px;margin-bottom:4px;border-radius:8px}" +
    ".onduty-sr{position:absolute!important;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}" +
    "@media (max-width:479.98px){.onduty-root .onduty-panel{position:fixed;inset:0;width:100%;max-width:none;height:100%;border-radius:0}.onduty-open .onduty-launcher{display:none}}";

  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    for (var k in attrs) {
      var v = attrs[k];
      if (k === "text") e.textContent = v;
      else if (k === "t") { e.setAttribute("data-t", v); e.textContent = t(v); }
      else if (k === "tl") { e.setAttribute("data-tl", v); e.setAttribute("aria-label", t(v)); e.setAttribute("title", t(v)); }
      else if (v === true) e.setAttribute(k, "");
      else if (v !== false && v != null) e.setAttribute(k, v);
    }
    (kids || []).forEach(function (c) { e.appendChild(c); });
    return e;
  }
  // Icons: inline SVG, 24×24 strokes (no emoji: some systems have no emoji font).
  var ICONS = {
    chat: "M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z",
    down: "M6 9l6 6 6-6",
    x: "M18 6L6 18M6 6l12 12",
    clip: "M21 11l-8.5 8.5a5 5 0 0 1-7-7L14 4a3.5 3.5 0 0 1 5 5l-8.5 8.5a2 2 0 0 1-3-3L15 7",
    send: "M22 2L11 13M22 2l-7 20-4-9-9-4 20-7z",
    bell: "M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9M13.7 21a2 2 0 0 1-3.4 0",
    mute: "M13.7 21a2 2 0 0 1-3.4 0M18.6 13A17.9 17.9 0 0 1 18 8M6.3 6.3A6 6 0 0 0 6 8c0 7-3 9-3 9h14M18 8a6 6 0 0 0-9.3-5M2 2l20 20",
    star: "M12 2l3 6.3 6.9.9-5 4.8 1.2 6.9L12 17.7 5.9 20.9l1.2-6.9-5-4.8 6.9-.9z"
  };
  function icon(name) {
    var s = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    s.setAttribute("viewBox", "0 0 24 24");
    s.setAttribute("aria-hidden", "true");
    s.setAttribute("focusable", "false");
    var p = document.createElementNS("http://www.w3.org/2000/svg", "path");
    p.setAttribute("d", ICONS[name]);
    s.appendChild(p);
    return s;
  }
  function setIcon(btn, name) { var old = btn.querySelector("svg"); btn.replaceChild(icon(name), old); }

  var style = el("style", { text: css });
  var dot = el("span", { "class": "onduty-dot", "data-status": "offline", "aria-hidden": "true" });
  var badge = el("span", { id: "onduty-unread", "class": "onduty-badge", "aria-hidden": "true", hidden: true });
  var launcher = el("button", { id: "onduty-launcher", "class": "onduty-launcher", type: "button", "aria-expanded": "false", "aria-controls": "onduty-panel", "aria-label": t("chat") }, [icon("chat"), dot, badge]);

  var headAv = el("span", { id: "onduty-head-av", "class": "onduty-av", "aria-hidden": "true" }, [icon("chat")]);
  var title = el("h2", { id: "onduty-title", text: "Chat" });
  var headDot = el("span", { "class": "onduty-dot", "data-status": "offline", "aria-hidden": "true" });
  var subText = el("span", { id: "onduty-sub" });
  var muteBtn = el("button", { id: "onduty-mute", "class": "onduty-icon", type: "button", tl: "mute", "aria-pressed": "false" }, [icon("bell")]);
  var closeBtn = el("button", { id: "onduty-close", "class": "onduty-icon", type: "button", tl: "closeW" }, [icon("x")]);
  var greeting = el("p", { id: "onduty-greeting", "class": "onduty-greeting" });
  var waitText = el("span", { id: "onduty-waiting-text" });
  var waiting = el("p", { id: "onduty-waiting", "class": "onduty-wait", role: "status", hidden: true }, [el("span", { "class": "onduty-spin", "aria-hidden": "true" }), waitText]);

  var log = el("div", { id: "onduty-messages", "class": "onduty-log", role: "log", "aria-live": "polite", "aria-relevant": "additions", "aria-labelledby": "onduty-title", tabindex: "0" });
  // Pre-chat fields (status.prechat), shown until the chat starts.
  var nameLabel = el("label", { "for": "onduty-name" });
  var nameInput = el("input", { id: "onduty-name", "class": "onduty-field", type: "text", autocomplete: "name", maxlength: "200" });
  var emailLabel = el("label", { "for": "onduty-email" });
  var emailInput = el("input", { id: "onduty-email", "class": "onduty-field", type: "email", autocomplete: "email", maxlength: "254" });
  var consentBox = el("input", { id: "onduty-consent", type: "checkbox" });
  var consentText = el("span", { id: "onduty-consent-text" });
  var consentRow = el("label", { "class": "onduty-check", "for": "onduty-consent" }, [consentBox, consentText]);
  var nameRow = el("div", { "class": "onduty-view" }, [nameLabel, nameInput]);
  var emailRow = el("div", { "class": "onduty-view" }, [emailLabel, emailInput]);
  var intro = el("div", { id: "onduty-intro", "class": "onduty-form onduty-bare" }, [nameRow, emailRow, consentRow]);
  var input = el("textarea", { id: "onduty-input", "class": "onduty-field", dir: "auto", rows: "2", maxlength: "4000", required: true });
  var sendBtn = el("button", { id: "onduty-send", "class": "onduty-send", type: "submit", tl: "send" }, [icon("send")]);
  var fileInput = el("input", { id: "onduty-file", type: "file", "class": "onduty-sr", tabindex: "-1", "aria-hidden": "true" });
  var attachBtn = el("button", { id: "onduty-attach", "class": "onduty-attach", type: "button", tl: "file", hidden: true }, [icon("clip")]);
  var chatError = el("p", { id: "onduty-error", "class": "onduty-error", role: "alert" });
  var endBtn = el("button", { id: "onduty-end", "class": "onduty-link", type: "button", t: "end", hidden: true });
  var chatForm = el("form", { id: "onduty-chat-form", "class": "onduty-form", novalidate: true }, [
    intro, el("label", { "for": "onduty-input", "class": "onduty-sr", t: "msg" }),
    el("div", { "class": "onduty-row" }, [input, attachBtn, sendBtn]), fileInput, chatError, endBtn]);

  // After a chat: a rating, and the transcript by email when offered.
  var stars = [];
  for (var i = 1; i <= 5; i++) stars.push(el("button", { "class": "onduty-star", type: "button", "data-score": String(i), "aria-pressed": "false" }, [icon("star")]));
  var rateComment = el("textarea", { id: "onduty-rate-comment", "class": "onduty-field", rows: "2", maxlength: "1000", hidden: true });
  var rateSend = el("button", { id: "onduty-rate-send", "class": "onduty-btn", type: "button", t: "rateSend", hidden: true });
  var rateBox = el("div", { id: "onduty-rate", "class": "onduty-after onduty-bare" }, [
    el("p", { id: "onduty-rate-q", t: "rate" }), el("div", { "class": "onduty-stars", role: "group", "aria-labelledby": "onduty-rate-q" }, stars),
    el("label", { "for": "onduty-rate-comment", "class": "onduty-sr", t: "comment" }), rateComment, rateSend]);
  var rateDone = el("p", { id: "onduty-rated", t: "rated", hidden: true });
  var mailBtn = el("button", { id: "onduty-transcript", "class": "onduty-link onduty-mid", type: "button", t: "mailT", hidden: true });
  var afterNote = el("p", { id: "onduty-after-note", role: "status", "class": "onduty-error onduty-note" });
  var after = el("div", { id: "onduty-after", "class": "onduty-after", hidden: true }, [rateBox, rateDone, mailBtn, afterNote]);
  var chatView = el("div", { id: "onduty-chat-view", "class": "onduty-view" }, [log, after, chatForm]);

  var offName = el("input", { id: "onduty-off-name", "class": "onduty-field", type: "text", autocomplete: "name", maxlength: "200" });
  var offEmail = el("input", { id: "onduty-off-email", "class": "onduty-field", type: "email", autocomplete: "email", required: true, maxlength: "254" });
  var offText = el("textarea", { id: "onduty-off-text", "class": "onduty-field", dir: "auto", rows: "4", maxlength: "4000", required: true });
  var offSend = el("button", { id: "onduty-off-send", "class": "onduty-btn", type: "submit", t: "offSend" });
  var offError = el("p", { id: "onduty-off-error", "class": "onduty-error", role: "alert" });
  var offNameLabel = el("label", { "for": "onduty-off-name" }), offEmailLabel = el("label", { "for": "onduty-off-email" }), offTextLabel = el("label", { "for": "onduty-off-text" });
  var offNameRow = el("div", { "class": "onduty-view" }, [offNameLabel, offName]);
  var offConsentBox = el("input", { id: "onduty-off-consent", type: "checkbox" });
  var offConsentText = el("span");
  var offConsentRow = el("label", { "class": "onduty-check", "for": "onduty-off-consent" }, [offConsentBox, offConsentText]);
  var offForm = el("form", { id: "onduty-offline-form", "class": "onduty-form onduty-bare", novalidate: true }, [
    offNameRow, offEmailLabel, offEmail, offTextLabel, offText, offConsentRow, offError, offSend]);
  var offDone = el("p", { id: "onduty-off-done", "class": "onduty-done", role: "status", tabindex: "-1", hidden: true });
  var offView = el("div", { id: "onduty-offline-view", "class": "onduty-view onduty-scroll", hidden: true }, [offForm, offDone]);

  var panel = el("div", { id: "onduty-panel", "class": "onduty-panel", role: "dialog", "aria-labelledby": "onduty-title", hidden: true }, [
    el("div", { "class": "onduty-head" }, [headAv, el("div", { "class": "onduty-hd" }, [title, el("div", { "class": "onduty-sub" }, [headDot, subText])]), muteBtn, closeBtn]),
    greeting, waiting, chatView, offView]);
  var root = el("div", { id: "onduty-root", "class": "onduty-root", hidden: true }, [style, launcher, panel]);

  // ---- helpers -------------------------------------------------------------
  function restore() {
    try { var c = JSON.parse(stored.getItem(KEY) || "null"); return c && c.id && c.token ? c : null; } catch (e) { return null; }
  }
  function save() {
    try { if (chat) stored.setItem(KEY, JSON.stringify(chat)); else stored.removeItem(KEY); } catch (e) { /* storage off */ }
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
  function muted() { try { return stored.getItem(MUTE) === "1"; } catch (e) { return false; } }
  function idParts(id) { var p = String(id).split("-"); return [Number(p[0]) || 0, Number(p[1]) || 0]; }
  function idAfter(a, b) { if (!b) return true; var x = idParts(a), y = idParts(b); return x[0] > y[0] || (x[0] === y[0] && x[1] > y[1]); }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function hhmm(at) { var d = at ? new Date(at) : new Date(); if (isNaN(d)) d = new Date(); return pad(d.getHours()) + ":" + pad(d.getMinutes()); }
  // initials: the first letters of the first two words of a name.
  function initials(name) {
    return String(name || "?").trim().split(/\s+/).slice(0, 2).map(function (w) { return Array.from(w)[0] || ""; }).join("").toUpperCase();
  }
  // ink is black or white, whichever contrasts more with the colour (WCAG).
  function ink(hex) {
    var h = hex.slice(1);
    if (h.length === 3) h = h.replace(/./g, "$&$&");
    var n = parseInt(h, 16), c = [n >> 16 & 255, n >> 8 & 255, n & 255].map(function (v) {
      v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    var lum = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    return (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) ? "#000" : "#fff";
  }
  function isRTL() { return (document.documentElement.dir || document.body.dir || "").toLowerCase() === "rtl"; }

  function request(method, path, body, token) {
    var h = {};
    if (body) h["Content-Type"] = "application/json";
    if (token) h["Authorization"] = "Bearer " + token;
    return fetch(api + path, { method: method, headers: h, body: body ? JSON.stringify(body) : undefined, mode: "cors", credentials: "omit", cache: "no-cache" })
      .then(function (r) {
        return r.text().then(function (tx) {
          var data = null;
          try { data = tx ? JSON.parse(tx) : null; } catch (e) { /* not JSON */ }
          if (!r.ok) {
            var err = new Error(data && data.error ? data.error.message : "HTTP " + r.status);
            err.status = r.status;
            err.code = data && data.error ? data.error.code : "";
            throw err;
          }
          return data;
        });
      });
  }
  function explain(e) {
    if (e.status === 429) return t("fast");
    if (!e.status) return t("net");
    return e.message;
  }

  // ---- look and labels -----------------------------------------------------
  function applyLook() {
    var look = (status && status.widget) || {};
    var langs = [look.language, document.documentElement.lang];
    L = LABELS.en;
    for (var i = 0; i < langs.length; i++) {
      var l = String(langs[i] || "").toLowerCase().slice(0, 2);
      if (LABELS[l]) { L = LABELS[l]; break; }
    }
    var c = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(look.color || "") ? look.color : "#1f6feb";
    root.style.setProperty("--c", c);
    root.style.setProperty("--t", ink(c));
    var rtl = isRTL();
    root.setAttribute("dir", rtl ? "rtl" : "ltr");
    root.classList.toggle("onduty-left", look.position ? look.position === "left" : rtl);
    root.querySelectorAll("[data-t]").forEach(function (e) { e.textContent = t(e.getAttribute("data-t")); });
    root.querySelectorAll("[data-tl]").forEach(function (e) { var s = t(e.getAttribute("data-tl")); e.setAttribute("aria-label", s); e.setAttribute("title", s); });
    input.setAttribute("placeholder", t("ph"));
    stars.forEach(function (s, i) { s.setAttribute("aria-label", t("star", i + 1)); });
    rateComment.setAttribute("placeholder", t("comment"));
    offEmailLabel.textContent = t("email") + " (" + t("req") + ")";
    offTextLabel.textContent = t("msg") + " (" + t("req") + ")";
  }

  // prechat is the property's pre-chat form: default name optional, email
  // optional when the server emails, else not asked.
  function prechat() {
    var p = (status && status.prechat) || {};
    return { name: p.name || "optional", email: p.email || (status && status.email ? "optional" : "hidden"), consent: p.consent || "" };
  }

  // ---- status --------------------------------------------------------------
  function setStatus(st) {
    if (!st || !st.status) return;
    status = st;
    applyLook();
    dot.setAttribute("data-status", st.status);
    headDot.setAttribute("data-status", st.status);
    greeting.textContent = st.greeting || "";
    render();
  }

  function render() {
    var offline = status && status.status === "offline";
    root.hidden = !status || (offline && status.mode === "hidden" && !chat);
    var form = offline && status.mode === "form" && (!chat || offSent);
    chatView.hidden = form;
    offView.hidden = !form;
    greeting.hidden = (!!chat || !!closed) && !form;
    var pc = prechat();
    intro.hidden = !!chat || !!closed;
    nameRow.hidden = pc.name === "hidden";
    emailRow.hidden = pc.email === "hidden";
    consentRow.hidden = !pc.consent;
    consentText.textContent = pc.consent;
    nameLabel.textContent = offNameLabel.textContent = t("name") + " (" + t(pc.name === "required" ? "req" : "opt") + ")";
    offNameRow.hidden = nameRow.hidden;
    offConsentRow.hidden = consentRow.hidden;
    offConsentText.textContent = pc.consent;
    emailLabel.textContent = t("email") + " (" + t(pc.email === "required" ? "req" : "opt") + ")";
    endBtn.hidden = attachBtn.hidden = !chat;
    after.hidden = !closed;
    mailBtn.hidden = !(closed && closed.email && status && status.email === true);
    // Waiting: a chat nobody has joined yet.
    var pending = chat && !chat.agent && !form;
    waiting.hidden = !pending;
    if (pending) waitText.textContent = t(offline ? "later" : "wait");
    title.textContent = (status && status.widget && status.widget.title) || t("chat");
    var agent = chat && chat.agent;
    subText.textContent = agent || (status ? t(status.status) : "");
    headDot.hidden = !!agent;
    if (agent) headAv.textContent = initials(agent); else if (!headAv.querySelector("svg")) { headAv.textContent = ""; headAv.appendChild(icon("chat")); }
    if (root.hidden && !panel.hidden) toggle(false);
    else if (openAtStart && !root.hidden) { openAtStart = false; toggle(true); }
    updateUnread();
  }

  function poll() { request("GET", "/properties/" + P + "/status").then(setStatus, function () { /* try again at the next tick */ }); }

  function followStatus() {
    // The GET answers fast on a slow stream; once the stream has spoken, a
    // late GET answer is older than what it said and is dropped.
    var streamed = false;
    request("GET", "/properties/" + P + "/status").then(function (st) { if (!streamed) setStatus(st); }, function () { /* the stream will tell */ });
    openStatusStream(function () { streamed = true; });
  }
  function openStatusStream(spoke) {
    if (statusES) statusES.close(); // one stream, also after a return from the back/forward cache
    var es = statusES = new EventSource(api + "/properties/" + P + "/status/stream");
    es.addEventListener("status", function (e) {
      if (spoke) spoke();
      streamRetry = 0;
      if (pollTimer) { clearInterval(pollTimer); pollTimer = 0; }
      setStatus(JSON.parse(e.data));
    });
    es.onerror = function () {
      if (es.readyState !== 2) return; // the browser reconnects by itself
      // Refused (the server answers 503 or 429 when its stream caps are
      // reached) or broken: poll GET status (the browser revalidates with
      // If-None-Match) every 30 s, and try the stream again later.
      es.close();
      if (!pollTimer) { poll(); pollTimer = setInterval(poll, POLL); }
      setTimeout(function () { openStatusStream(null); }, Math.min(300000, 1.5 * POLL * Math.pow(2, streamRetry++)));
    };
  }

  // ---- unread, title, sound ------------------------------------------------
  function newestAgent() {
    var n = log.querySelectorAll(".onduty-from-agent[data-id]");
    return n.length ? n[n.length - 1].getAttribute("data-id") : "";
  }
  function unreadCount() {
    if (!panel.hidden) return 0;
    var n = 0;
    log.querySelectorAll(".onduty-from-agent[data-id]").forEach(function (m) { if (idAfter(m.getAttribute("data-id"), readId)) n++; });
    return n;
  }
  function updateUnread() {
    if (!panel.hidden) {
      var last = newestAgent();
      if (last && idAfter(last, readId)) { readId = last; if (chat) { chat.read = last; save(); } }
    }
    var n = unreadCount();
    badge.textContent = n > 99 ? "99+" : String(n);
    badge.hidden = !n;
    launcher.setAttribute("aria-label", [t("chat"), status ? t(status.status).toLowerCase() : ""].concat(n ? [t("unread", n)] : []).join(", "));
    var bare = document.title.replace(/^\(\d+\) /, "");
    var want = n ? "(" + n + ") " + bare : bare;
    if (document.title !== want) document.title = want;
  }
  function onFirst() { interacted = true; }
  document.addEventListener("pointerdown", onFirst, true);
  document.addEventListener("keydown", onFirst, true);
  // ding plays two short tones, only once the visitor has interacted with
  // the page (browsers refuse audio before) and unless muted.
  function ding() {
    var AC = window.AudioContext || window.webkitAudioContext;
    if (!interacted || muted() || !AC) return;
    try {
      actx = actx || new AC();
      if (actx.state === "suspended") actx.resume();
      var now = actx.currentTime;
      [880, 1320].forEach(function (f, i) {
        var o = actx.createOscillator(), g = actx.createGain(), s = now + i * 0.13;
        o.frequency.value = f;
        g.gain.setValueAtTime(0.0001, s);
        g.gain.exponentialRampToValueAtTime(0.15, s + 0.02);
        g.gain.exponentialRampToValueAtTime(0.0001, s + 0.25);
        o.connect(g);
        g.connect(actx.destination);
        o.start(s);
        o.stop(s + 0.3);
      });
      sounds++;
    } catch (e) { /* no audio */ }
  }
  function showMute() {
    var m = muted();
    muteBtn.setAttribute("aria-pressed", m ? "true" : "false");
    setIcon(muteBtn, m ? "mute" : "bell");
  }
  muteBtn.addEventListener("click", function () {
    try { if (muted()) stored.removeItem(MUTE); else stored.setItem(MUTE, "1"); } catch (e) { /* storage off */ }
    showMute();
  });

  // ---- chat ----------------------------------------------------------------
  function toEnd() { log.scrollTop = log.scrollHeight; }

  function line(cls, text, name, id, att, at) {
    var m = el("div", { "class": "onduty-msg onduty-from-" + cls, "data-id": id || null });
    var b = el("div", { "class": "onduty-bubble" });
    if (cls === "agent") {
      m.appendChild(el("span", { "class": "onduty-av", "aria-hidden": "true", text: initials(name) }));
      b.appendChild(el("span", { "class": "onduty-name", text: name }));
    }
    if (att && chat) {
      // The file is the chat's: fetched with the visitor's token.
      var href = api + "/chats/" + chat.id + "/files/" + encodeURIComponent(att.key) + "?token=" + encodeURIComponent(chat.token);
      var a = el("a", { "class": "onduty-file", href: href, target: "_blank", rel: "noopener" }, [icon("clip"), document.createTextNode(" " + att.name)]);
      if (/^image\/(png|jpeg|gif|webp)$/.test(att.mime)) {
        var img = el("img", { src: href, alt: att.name });
        img.addEventListener("load", toEnd);
        a.insertBefore(img, a.firstChild);
      }
      b.appendChild(a);
    }
    b.appendChild(document.createTextNode(text));
    if (cls !== "system") b.appendChild(el("time", { "class": "onduty-time", datetime: at || null, text: hhmm(at) }));
    m.appendChild(b);
    return m;
  }

  // addMessage shows a message once. how: "local" for our own message as the
  // POST answered it (it does not move chat.last, which marks how far the
  // event stream and transcript have delivered: an agent message stored just
  // before ours may still be on its way); "live" for one that arrives now.
  function addMessage(m, how) {
    if (!m || !m.id || seen[m.id] || m.note) return;
    seen[m.id] = true;
    var from = m.from === "visitor" ? "visitor" : m.from === "agent" ? "agent" : "system";
    var node = line(from, m.text || "", from === "agent" ? (m.name || "Agent") : "", m.id, m.attachment, m.at);
    // Keep transcript order even when a replay and a live event cross.
    var next = null;
    for (var c = log.lastChild; c; c = c.previousSibling) {
      var cid = c.getAttribute("data-id");
      if (cid && idAfter(cid, m.id)) next = c; else if (cid) break;
    }
    log.insertBefore(node, next);
    toEnd();
    if (chat && how !== "local" && idAfter(m.id, chat.last)) { chat.last = m.id; save(); }
    if (from === "agent" && how === "live" && idAfter(m.id, readId) && (panel.hidden || document.hidden)) ding();
    updateUnread();
  }

  function system(text) { log.appendChild(line("system", text)); toEnd(); }

  function loadTranscript(all, how) {
    if (!chat) return;
    var c = chat;
    request("GET", "/chats/" + c.id + "/messages" + (c.last && !all ? "?after=" + encodeURIComponent(c.last) : ""), null, c.token)
      .then(function (d) { if (chat === c) (d.messages || []).forEach(function (m) { addMessage(m, how); }); }, function (e) {
        if (chat === c && (e.status === 401 || e.status === 403 || e.status === 404)) ended(t("ended"), true);
      });
  }

  function connectChat() {
    if (!chat) return;
    var c = chat;
    if (chatES) chatES.close();
    var url = api + "/chats/" + c.id + "/events?token=" + encodeURIComponent(c.token) + (c.last ? "&last_event_id=" + encodeURIComponent(c.last) : "");
    var es = chatES = new EventSource(url);
    es.addEventListener("open", function () {
      if (reconnecting) loadTranscript(false, "live");
      reconnecting = false;
      chatRetry = 0;
    });
    es.addEventListener("message", function (e) { addMessage(JSON.parse(e.data).message, "live"); });
    es.addEventListener("agent_joined", function (e) {
      var d = JSON.parse(e.data);
      if (d.agent && chat === c && d.agent !== c.agent) { c.agent = d.agent; save(); system(t("joined", d.agent)); render(); }
    });
    es.addEventListener("chat_closed", function () { if (chat === c) ended(t("ended")); });
    es.addEventListener("status", function (e) { setStatus(JSON.parse(e.data)); });
    es.onerror = function () {
      reconnecting = true;
      if (es.readyState !== 2 || chatES !== es) return; // the browser reconnects by itself
      es.close();
      chatES = null;
      setTimeout(function () { if (chat === c) { loadTranscript(false, "live"); connectChat(); } }, Math.min(30000, 1000 * Math.pow(2, chatRetry++)));
    };
  }

  // ended forgets the chat; unless it is gone for good, the visitor may rate
  // it and ask for its transcript.
  function ended(text, gone) {
    if (chatES) { chatES.close(); chatES = null; }
    closed = gone || !chat ? null : { id: chat.id, token: chat.token, email: !!chat.email };
    chat = null;
    offSent = false;
    save();
    system(text);
    resetAfter();
    render();
  }

  function resetAfter() {
    score = 0;
    stars.forEach(function (s) { s.setAttribute("aria-pressed", "false"); });
    rateComment.value = "";
    rateComment.hidden = rateSend.hidden = true;
    rateBox.hidden = false;
    rateDone.hidden = true;
    afterNote.textContent = "";
  }

  // adoptChat takes a chat the server answered with, as the open one.
  function adoptChat(d, email) {
    seen = {};
    readId = "";
    closed = null;
    chat = { id: d.chat_id, token: d.visitor_token, last: "", read: "", email: email };
    save();
    connectChat();
    loadTranscript(true);
  }

  function send(text) {
    chatError.textContent = "";
    if (!chat) {
      var pc = prechat(), name = nameInput.value.trim(), email = emailInput.value.trim();
      var bad = pc.name === "required" && !name ? [nameInput, "needName"] :
        (pc.email === "required" && !email) || (email && !emailInput.checkValidity()) ? [emailInput, "needEmail"] :
          pc.consent && !consentBox.checked ? [consentBox, "needConsent"] : null;
      if (bad) { chatError.textContent = t(bad[1]); bad[0].focus(); return; }
      sendBtn.disabled = true;
      var body = { name: pc.name === "hidden" ? "" : name, email: pc.email === "hidden" ? "" : email, consent: consentBox.checked, message: text, page_url: location.href, referrer: document.referrer, language: navigator.language, visitor_id: visitorID() };
      try { body.time_zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { /* unknown */ }
      return request("POST", "/properties/" + P + "/chats", withContext(body))
        .then(function (d) {
          log.textContent = "";
          adoptChat(d, !!body.email);
          render();
          input.value = "";
        }, function (e) { chatError.textContent = explain(e); })
        .then(function () { sendBtn.disabled = false; });
    }
    var c = chat;
    sendBtn.disabled = true;
    return request("POST", "/chats/" + c.id + "/messages", { text: text }, c.token)
      .then(function (d) {
        addMessage({ id: d.id, from: "visitor", text: text, at: new Date().toISOString() }, "local");
        input.value = "";
      }, function (e) {
        if (e.status === 409 || e.status === 403 || e.status === 404) { ended(t("ended"), e.status !== 409); return; }
        chatError.textContent = explain(e);
      })
      .then(function () { sendBtn.disabled = false; });
  }

  // A file goes with the text typed so far as its caption.
  attachBtn.addEventListener("click", function () { fileInput.click(); });
  fileInput.addEventListener("change", function () {
    var f = fileInput.files && fileInput.files[0], c = chat;
    fileInput.value = "";
    if (!f || !c) return;
    if (f.size > 5 * 1024 * 1024) { chatError.textContent = t("big"); return; }
    var text = input.value.trim() ? input.value : "";
    var form = new FormData();
    form.append("file", f, f.name);
    if (text) form.append("text", text);
    chatError.textContent = "";
    attachBtn.disabled = sendBtn.disabled = true;
    fetch(api + "/chats/" + c.id + "/files", { method: "POST", headers: { Authorization: "Bearer " + c.token }, body: form, mode: "cors", credentials: "omit" })
      .then(function (r) {
        return r.json().then(null, function () { return null; }).then(function (d) {
          if (!r.ok) { var err = new Error(d && d.error ? d.error.message : "HTTP " + r.status); err.status = r.status; throw err; }
          addMessage({ id: d.id, from: "visitor", text: text, attachment: d.attachment, at: new Date().toISOString() }, "local");
          if (text) input.value = "";
        });
      })
      .then(null, function (e) { chatError.textContent = explain(e); })
      .then(function () { attachBtn.disabled = sendBtn.disabled = false; });
  });

  chatForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value;
    if (!text.trim()) { chatError.textContent = t("write"); input.focus(); return; }
    send(text);
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); chatForm.requestSubmit ? chatForm.requestSubmit() : chatForm.dispatchEvent(new Event("submit")); }
  });
  endBtn.addEventListener("click", function () {
    var c = chat;
    if (!c) return;
    request("POST", "/chats/" + c.id + "/close", {}, c.token).then(null, function () { /* closed anyway for us */ });
    ended(t("ended"));
  });

  // Rating (1..5 and a comment) and the transcript by email.
  var score = 0;
  stars.forEach(function (s, i) {
    s.addEventListener("click", function () {
      score = i + 1;
      stars.forEach(function (x, j) { x.setAttribute("aria-pressed", j < score ? "true" : "false"); });
      rateComment.hidden = rateSend.hidden = false;
    });
  });
  rateSend.addEventListener("click", function () {
    var c = closed;
    if (!c || !score) return;
    rateSend.disabled = true;
    afterNote.textContent = "";
    request("POST", "/chats/" + c.id + "/rating", { score: score, comment: rateComment.value.trim() }, c.token)
      .then(function () { rateBox.hidden = true; rateDone.hidden = false; },
        function (e) { afterNote.textContent = explain(e); rateSend.disabled = false; });
  });
  mailBtn.addEventListener("click", function () {
    var c = closed;
    if (!c) return;
    mailBtn.disabled = true;
    request("POST", "/chats/" + c.id + "/transcript", {}, c.token)
      .then(function () { mailBtn.hidden = true; afterNote.textContent = t("mailed"); },
        function (e) { afterNote.textContent = e.code === "no_email" ? t("noEmail") : explain(e); })
      .then(function () { mailBtn.disabled = false; });
  });

  offForm.addEventListener("submit", function (e) {
    e.preventDefault();
    offError.textContent = "";
    var pc = prechat();
    var bad = pc.name === "required" && !offName.value.trim() ? [offName, "needName"] :
      !offEmail.value.trim() || !offEmail.checkValidity() ? [offEmail, "needEmail"] :
        !offText.value.trim() ? [offText, "write"] : pc.consent && !offConsentBox.checked ? [offConsentBox, "needConsent"] : null;
    if (bad) { offError.textContent = t(bad[1]); bad[0].focus(); return; }
    offSend.disabled = true;
    request("POST", "/properties/" + P + "/offline-messages", withContext({ name: pc.name === "hidden" ? "" : offName.value.trim(), email: offEmail.value.trim(), text: offText.value, consent: offConsentBox.checked }))
      .then(function (d) {
        // With a token the answer shows here too when the visitor comes back.
        var kept = !!(d && d.chat_id && d.visitor_token);
        if (kept) { log.textContent = ""; offSent = true; adoptChat(d, true); }
        offDone.textContent = t("thanks") + " " + (status && status.email === true ? t("thanksMail") : kept ? t("thanksHere") : "");
        offForm.hidden = true;
        offDone.hidden = false;
        render();
        offDone.focus();
      }, function (err) { offError.textContent = explain(err); })
      .then(function () { offSend.disabled = false; });
  });

  // ---- open / close --------------------------------------------------------
  function toggle(show) {
    panel.hidden = !show;
    root.classList.toggle("onduty-open", show);
    launcher.setAttribute("aria-expanded", show ? "true" : "false");
    setIcon(launcher, show ? "down" : "chat");
    if (show) {
      toEnd();
      (offView.hidden ? input : offForm.hidden ? offDone : offEmail).focus();
    }
    updateUnread();
  }
  launcher.addEventListener("click", function () { toggle(panel.hidden); });
  closeBtn.addEventListener("click", function () { toggle(false); launcher.focus(); });
  root.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && !panel.hidden) { toggle(false); launcher.focus(); }
  });

  // Another tab started, read or ended the chat.
  window.addEventListener("storage", function (e) {
    if (e.key !== KEY) return;
    var c = restore();
    if (c && (!chat || c.id !== chat.id)) { log.textContent = ""; seen = {}; closed = null; chat = c; readId = c.read || ""; render(); loadTranscript(true); connectChat(); }
    else if (!c && chat) ended(t("ended"));
    else if (c && chat && c.read && idAfter(c.read, readId)) { readId = chat.read = c.read; if (c.agent) chat.agent = c.agent; render(); }
  });

  // A page kept in the back/forward cache would hold its streams open, and
  // browsers allow six connections per host: close them, reopen on return.
  window.addEventListener("pagehide", function () {
    if (statusES) statusES.close();
    if (chatES) { chatES.close(); chatES = null; }
  });
  window.addEventListener("pageshow", function (e) {
    if (!e.persisted) return;
    followStatus();
    if (chat) { loadTranscript(false, "live"); connectChat(); }
  });

  function start() {
    document.body.appendChild(root);
    applyLook();
    showMute();
    followStatus();
    if (chat) { loadTranscript(true); connectChat(); }
  }
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);

  // ---- Site integration: who the visitor is, and where they are ------------
  // A site sets window.ondutyIdentity = {user_id, email, name, attrs, signature}
  // before this script, or calls window.onduty.identify({...}) later; the
  // identity goes with the next chat or offline message.
  var identity = window.ondutyIdentity || null;
  function withContext(body) {
    var tz = "";
    try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { /* old browser */ }
    body.page_url = location.href.slice(0, 2048);
    body.referrer = document.referrer.slice(0, 2048);
    body.language = (navigator.language || "").slice(0, 35);
    body.time_zone = tz.slice(0, 64);
    body.visitor_id = visitorID();
    if (identity) body.identity = identity;
    return body;
  }

  // For tests and hosts: the widget's state, and identify().
  window.onduty = {
    property: prop, status: function () { return status; }, chat: function () { return chat && chat.id; },
    unread: unreadCount, sounds: function () { return sounds; },
    identify: function (id) { identity = id && typeof id === "object" ? id : null; }
  };
})();
