// onduty team board: reads /v1/admin/events with fetch() (so the admin token
// travels as a bearer header, never in a URL) and renders every property.
(function () {
  'use strict';
  var KEY = 'onduty-admin-token';
  var STALL_MS = 50000; // no byte (not even a heartbeat) this long: reconnect
  var props = {};       // property id → {presence, chats, chatsAt, chatsError, skew}
  var order = [];
  var ctl = null, gen = 0, retry = 1000, lastData = 0, live = false;

  function $(id) { return document.getElementById(id); }

  function token() {
    try { return sessionStorage.getItem(KEY) || ''; } catch (e) { return ''; }
  }
  function setToken(t) {
    try { if (t) { sessionStorage.setItem(KEY, t); } else { sessionStorage.removeItem(KEY); } } catch (e) { /* private mode */ }
  }

  // el builds an element; text is set with textContent only (never HTML).
  function el(tag, cls, text, data) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (data) { for (var k in data) { if (Object.prototype.hasOwnProperty.call(data, k)) { e.setAttribute('data-' + k, data[k]); } } }
    return e;
  }
  function add(parent) {
    for (var i = 1; i < arguments.length; i++) { if (arguments[i]) { parent.appendChild(arguments[i]); } }
    return parent;
  }

  function setConn(state, text) {
    var c = $('conn');
    c.setAttribute('data-state', state);
    c.textContent = text;
  }

  // ago words a past time like `onduty status` does.
  function ago(ms) {
    var m = Math.floor(ms / 60000);
    if (m < 1) { return 'just now'; }
    if (m < 60) { return m + ' min ago'; }
    var h = Math.floor(m / 60);
    if (h < 48) { return h + ' h ago'; }
    return Math.floor(h / 24) + ' days ago';
  }
  function dur(sec) {
    sec = Math.max(0, Math.floor(sec));
    if (sec < 60) { return sec + ' s'; }
    var m = Math.floor(sec / 60);
    if (m < 60) { return m + ' min'; }
    return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
  }
  function visitor(v) {
    v = v || {};
    if (v.name && v.email) { return v.name + ' (' + v.email + ')'; }
    return v.name || v.email || 'a visitor';
  }
  function badge(status) { return el('span', 'badge s-' + status, status); }

  function showLogin(msg) {
    live = false;
    $('login').hidden = false;
    $('signout').hidden = true;
    $('login-error').textContent = msg || '';
    $('board').textContent = '';
    $('adapters').hidden = true;
    props = {}; order = [];
    setConn('off', 'not connected');
    $('token').focus();
  }

  function stop() {
    gen++;
    if (ctl) { ctl.abort(); ctl = null; }
  }

  function connect() {
    stop();
    var my = gen, tok = token();
    if (!tok) { showLogin(''); return; }
    $('login').hidden = true;
    $('signout').hidden = false;
    setConn('connecting', 'connecting…');
    ctl = new AbortController();
    fetch('/v1/admin/events', {
      headers: { 'Authorization': 'Bearer ' + tok, 'Accept': 'text/event-stream' },
      cache: 'no-store', signal: ctl.signal
    }).then(function (res) {
      if (my !== gen) { return; }
      if (res.status === 401 || res.status === 403) { setToken(''); showLogin('That token was not accepted.'); return; }
      if (res.status === 404) { setToken(''); showLogin('The admin API is disabled on this server.'); return; }
      if (!res.ok || !res.body) { later(my); return; }
      live = true; retry = 1000; lastData = Date.now();
      setConn('live', 'live');
      return read(res.body.getReader(), my).then(function () { later(my); });
    }).catch(function () { later(my); });
  }

  function read(reader, my) {
    var dec = new TextDecoder(), buf = '';
    function step() {
      return reader.read().then(function (r) {
        if (r.done || my !== gen) { return; }
        lastData = Date.now();
        buf += dec.decode(r.value, { stream: true }).replace(/\r\n?/g, '\n');
        var i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          handle(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
        return step();
      });
    }
    return step();
  }

  function later(my) {
    if (my !== gen || !token()) { return; }
    live = false;
    setConn('reconnecting', 'reconnecting…');
    var wait = retry;
    retry = Math.min(retry * 2, 15000);
    setTimeout(function () { if (my === gen) { connect(); } }, wait);
  }

  // handle takes one server-sent event block.
  function handle(block) {
    var name = 'message', data = [];
    block.split('\n').forEach(function (line) {
      if (line === '' || line.charAt(0) === ':') { return; }
      var i = line.indexOf(':');
      var field = i < 0 ? line : line.slice(0, i);
      var value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'event') { name = value; } else if (field === 'data') { data.push(value); }
    });
    if (!data.length) { return; }
    var msg;
    try { msg = JSON.parse(data.join('\n')); } catch (e) { return; }
    if (name === 'adapters') { renderAdapters(msg.adapters || []); return; }
    var p = msg.property;
    if (!p) { return; }
    if (!props[p]) { props[p] = {}; order.push(p); }
    var st = props[p];
    if (name === 'presence') {
      st.presence = msg;
      st.skew = msg.now ? Date.now() - Date.parse(msg.now) : 0;
    } else if (name === 'chats') {
      st.chats = msg; st.chatsAt = Date.now(); st.chatsError = false;
    } else if (name === 'chats_error') {
      st.chatsError = true;
    } else {
      return;
    }
    render(p);
  }

  // renderAdapters shows each chat platform that stopped (a revoked token):
  // its agents get nothing until onduty restarts with a working one.
  function renderAdapters(list) {
    var box = $('adapters');
    box.textContent = '';
    var down = list.filter(function (a) { return !a.up; });
    box.hidden = !down.length;
    down.forEach(function (a) {
      add(box, el('p', 'adapter-down', a.name + ' stopped: ' + a.reason +
        '. Its agents get nothing until onduty restarts with working credentials.', { adapter: a.name }));
    });
  }

  function section(p) {
    var id = 'prop-' + p.replace(/[^A-Za-z0-9_-]/g, '_');
    var s = $(id);
    if (!s) {
      s = el('section', 'prop', null, { property: p });
      s.id = id;
      $('board').appendChild(s);
    }
    return s;
  }

  function render(p) {
    var st = props[p];
    if (!st || !st.presence) { return; }
    var pr = st.presence, r = pr.report, now = Date.now() - (st.skew || 0);
    var s = section(p);
    s.setAttribute('data-widget', r.status);
    s.textContent = '';

    add(s, add(el('h2'), el('span', 'pname', pr.name), el('span', 'pid', pr.name !== p ? p : ''),
      badge(r.status), el('span', 'mode', 'widget: ' + r.mode)));
    add(s, el('p', 'reason', 'Why: ' + r.reason));
    var sched = pr.schedule ? 'Schedule: ' + pr.schedule + (r.in_schedule ? ' (open now)' : r.closed ? ' (closed: holiday ' + r.closed + ')' : ' (closed now)') : 'No schedule: open at all hours';
    add(s, el('p', 'meta', sched));
    if (pr.stale) { add(s, el('p', 'stale', 'Presence is stale: Redis is unreachable, showing the last known state.')); }

    // Open chats per owner.
    var owned = {};
    var chats = st.chats;
    if (chats) { (chats.active || []).forEach(function (c) { owned[c.owner] = (owned[c.owner] || 0) + 1; }); }

    add(s, el('h3', null, 'Agents (' + r.agents.length + ')'));
    var table = el('table', 'agents');
    var head = el('tr');
    ['Agent', 'Effective', 'Chosen', 'Condition', 'Last activity', 'Surfaces', 'Chats', 'Why'].forEach(function (h) { add(head, el('th', null, h)); });
    add(table, add(el('thead'), head));
    var body = el('tbody');
    r.agents.forEach(function (a) {
      var tr = el('tr', null, null, { agent: a.id, effective: a.effective, counts: String(a.counts) });
      var name = el('td', 'name');
      add(name, el('span', 'who', a.name || a.id), el('span', 'pid', a.name && a.name !== a.id ? ' ' + a.id : ''));
      var eff = add(el('td', null, null, { label: 'Effective' }), badge(a.effective));
      var surf = el('td', 'surfaces', null, { label: 'Surfaces' });
      var list = (pr.surfaces && pr.surfaces[a.id]) || [];
      if (!list.length) { surf.textContent = 'none'; }
      list.forEach(function (x) { add(surf, el('span', 'tag', x === 'telegram' ? 'Telegram' : x === 'slack' ? 'Slack' : x)); });
      add(tr, name, eff,
        el('td', null, a.status, { label: 'Chosen' }),
        el('td', null, a.condition === 'always' ? 'always on' : 'by activity', { label: 'Condition' }),
        el('td', 'last-activity', a.last_activity ? ago(now - Date.parse(a.last_activity)) : 'never', { label: 'Last activity' }),
        surf,
        el('td', 'open-chats', chats ? String(owned[a.id] || 0) : '–', { label: 'Chats' }),
        el('td', 'why', a.reason, { label: 'Why' }));
      add(body, tr);
    });
    add(s, add(table, body));

    if (st.chatsError) { add(s, el('p', 'stale', 'Chat lists are unavailable right now (Redis).')); }
    if (!chats) { return; }
    // Waiting times from the server's clock at the list's read, moved on by
    // the time since it arrived (the list is only re-sent when it changes).
    var since = (Date.now() - (st.chatsAt || Date.now())) / 1000;
    var at = Date.parse(chats.at);
    chatList(s, 'Waiting for an agent', 'pending', chats.pending, chats.counts.pending, function (c) {
      return [el('span', 'wait', 'waiting ' + dur((at - Date.parse(c.created_at)) / 1000 + since))];
    });
    chatList(s, 'Active', 'active', chats.active, chats.counts.active, function (c) {
      var t = c.accepted_at || c.created_at;
      return [el('span', null, 'with ' + (c.owner_name || c.owner) + ', since ' + ago(now - Date.parse(t)))];
    });
    chatList(s, 'Offline messages, unanswered', 'offline', chats.offline, chats.counts.offline, function (c) {
      return [el('span', 'wait', 'left ' + ago(now - Date.parse(c.created_at)))];
    });
  }

  function chatList(s, title, kind, list, total, detail) {
    list = list || [];
    add(s, el('h3', null, title + ' (' + total + ')'));
    var ul = el('ul', 'chats', null, { list: kind });
    if (!list.length) { add(ul, el('li', 'empty', 'none')); }
    list.forEach(function (c) {
      var li = el('li', null, null, { chat: c.id, state: c.state });
      add(li, el('span', 'who', visitor(c.visitor)), document.createTextNode(' · '));
      detail(c).forEach(function (n) { add(li, n); });
      if (c.last) {
        var who = c.last.from === 'agent' ? (c.last.name || 'agent') + (c.last.note ? ' (note)' : '') : c.last.from;
        add(li, el('span', 'last', who + ': ' + c.last.text));
      }
      if (c.email_error) { add(li, el('span', 'last email-error', 'Email to the visitor refused: ' + c.email_error)); }
      add(ul, li);
    });
    if (total > list.length) { add(ul, el('li', 'empty', (total - list.length) + ' more not shown')); }
    add(s, ul);
  }

  $('login').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var t = $('token').value.trim();
    if (!t) { return; }
    setToken(t);
    $('token').value = '';
    connect();
  });
  $('signout').addEventListener('click', function () {
    setToken('');
    stop();
    showLogin('Signed out.');
  });
  // Relative times move on; a stalled connection is replaced.
  setInterval(function () {
    order.forEach(render);
    if (live && Date.now() - lastData > STALL_MS) { connect(); }
  }, 10000);

  if (token()) { connect(); } else { showLogin(''); }
}());
