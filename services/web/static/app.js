// The consent app in the browser, a reference for mobile developers.
// - The device key is a WebCrypto ECDSA P-256 key generated NON-EXTRACTABLE and kept in
//   IndexedDB: script can use it to sign but never read it (a phone keeps it in its keystore).
// - Enrolment sends the public key (SubjectPublicKeyInfo), the activation code and the PIN.
// - Pending requests: the app signs a fresh server challenge and asks the server to watch the
//   consent stream for it (long poll); each request shows who asks, what, and the code.
// - A decision first gets a one-time challenge for this request (approval-challenge), then signs
//   the approval message (consent.proto ApproveRequest; the same bytes tools/cli's app signs):
//     "QSIGN-CONSENT-APPROVAL-V2\n" || 0x01 u32be(len) statement || 0x02 u32be(1) decision
//     (0x01 approve, 0x02 deny) || 0x03 u32be(len) challenge
//   the server rebuilds the statement from its own record and checks signature, challenge, PIN.
//   Every attempt (also after a wrong PIN) takes a fresh challenge.
// - Changing the PIN, and setting a new one after an office's unblock, sign the PIN operation
//   message over a challenge with no request id:
//     "QSIGN-CONSENT-PIN-V1\n" || 0x01 u32be(1) op (0x01 change, 0x02 reset)
//     || 0x02 u32be(len) device id || 0x03 u32be(len) challenge
// WebCrypto signs ECDSA as r || s (IEEE P1363); the protocol wants DER (RFC 3279), so we convert.
'use strict';

(function () {
  const texts = JSON.parse(document.getElementById('texts').textContent);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const api = document.getElementById('app').dataset.api;
  const $ = (id) => document.getElementById(id);
  const DB = 'qsign-consent-app';
  const STORE = 'device';

  // ---- IndexedDB: one record, the device ----
  function openDb() {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(DB, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
  async function dbGet() {
    const db = await openDb();
    return new Promise((resolve, reject) => {
      const req = db.transaction(STORE).objectStore(STORE).get('me');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
  async function dbPut(value) {
    const db = await openDb();
    return new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, 'readwrite');
      tx.objectStore(STORE).put(value, 'me');
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
    });
  }
  async function dbClear() {
    const db = await openDb();
    return new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, 'readwrite');
      tx.objectStore(STORE).clear();
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
    });
  }

  // ---- bytes ----
  const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)));
  const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

  const utf8 = (text) => new TextEncoder().encode(text);

  // label || (tag, u32be length, value)*: the signed messages of consent/statement.h.
  function message(label, fields) {
    const parts = [utf8(label)];
    for (const [tag, value] of fields) {
      const head = new Uint8Array(5);
      head[0] = tag;
      new DataView(head.buffer).setUint32(1, value.length);
      parts.push(head, value);
    }
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }
  const approvalMessage = (statement, decision, challenge) =>
    message('QSIGN-CONSENT-APPROVAL-V2\n', [[1, statement],
      [2, Uint8Array.of(decision === 'approve' ? 1 : 2)], [3, challenge]]);
  const pinMessage = (op, deviceId, challenge) =>
    message('QSIGN-CONSENT-PIN-V1\n', [[1, Uint8Array.of(op === 'change' ? 1 : 2)],
      [2, utf8(deviceId)], [3, challenge]]);

  // r || s (32 + 32 bytes) -> DER SEQUENCE { INTEGER r, INTEGER s }.
  function p1363ToDer(sig) {
    const bytes = new Uint8Array(sig);
    const int = (b) => {
      let i = 0;
      while (i < b.length - 1 && b[i] === 0) i++;
      let v = b.slice(i);
      if (v[0] & 0x80) v = Uint8Array.of(0, ...v);
      return Uint8Array.of(0x02, v.length, ...v);
    };
    const r = int(bytes.slice(0, 32));
    const s = int(bytes.slice(32));
    return Uint8Array.of(0x30, r.length + s.length, ...r, ...s);
  }

  async function sign(key, data) {
    const raw = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key, data);
    return p1363ToDer(raw);
  }

  async function call(name, body) {
    const res = await fetch(api + name, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      credentials: 'same-origin',
      body: JSON.stringify(body),
    });
    const json = await res.json().catch(() => ({ error: texts['err.unavailable'] }));
    if (!res.ok) throw new Error(json.error || texts['err.unavailable']);
    return json;
  }

  let screen = '';  // The section shown.
  function show(id) {
    screen = id;
    for (const s of ['enrol', 'watching', 'decide', 'pin-settings', 'inactive']) $(s).hidden = s !== id;
    $('app-status').hidden = true;
  }

  // ---- state ----
  let device = null;          // { key, deviceId, accountId, name }
  const pending = new Map();  // request_id -> request
  let current = null;         // the request being decided
  let pin = '';
  let watching = false;

  async function enrol(ev) {
    ev.preventDefault();
    const code = $('activation_code').value.trim();
    const name = $('device_name').value.trim();
    const p1 = $('pin').value;
    if (p1 !== $('pin2').value) {
      $('app-status').hidden = false;
      $('app-status').textContent = texts['app.pin_mismatch'];
      return;
    }
    try {
      const pair = await crypto.subtle.generateKey(
        { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
      const spki = await crypto.subtle.exportKey('spki', pair.publicKey);
      const answer = await call('enroll', {
        activation_code: code, public_key: b64(spki), device_name: name, pin: p1,
      });
      device = { key: pair.privateKey, deviceId: answer.device_id,
        accountId: answer.account_id, name: name };
      await dbPut(device);
      $('pin').value = '';
      $('pin2').value = '';
      startWatching();
    } catch (e) {
      $('app-status').hidden = false;
      $('app-status').textContent = e.message;
    }
  }

  function renderList() {
    const list = $('requests');
    list.textContent = '';
    const now = Date.now();
    for (const [id, r] of pending) {
      if (r.expires_at < now) { pending.delete(id); continue; }
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'request';
      button.dataset.id = id;
      button.textContent = summary(r);
      button.addEventListener('click', () => openRequest(id));
      li.appendChild(button);
      list.appendChild(li);
    }
    $('idle').hidden = pending.size > 0;
  }

  // The request in the page's language, from its details (each of them inside the statement).
  function summary(r) {
    if (r.kind === 'login') return texts['app.login_summary'].replace('{code}', r.code || '');
    const names = (r.documents || []).map((d) => d.name || d.label).join(', ');
    return texts['app.sign_summary'].replace('{count}', String(r.hashes || 0))
      .replace('{names}', names || r.display_text);
  }

  function openRequest(id) {
    current = pending.get(id);
    if (!current) return;
    pin = '';
    $('pin-display').textContent = '';
    $('decide-status').textContent = '';
    $('req-title').textContent = current.kind === 'login' ? texts['app.kind.login'] : texts['app.kind.sign'];
    $('req-text').textContent = summary(current);
    // The service's own line, as it is inside the signed statement.
    $('req-statement').textContent = texts['app.statement'] + ' ' + current.display_text;
    $('req-code').textContent = current.code ? texts['app.code_is'] + ' ' + current.code : '';
    const docs = $('req-docs');
    docs.textContent = '';
    if (current.kind === 'login' && current.client) {
      const from = document.createElement('li');
      from.id = 'req-client';
      from.textContent = texts['app.from'] + ' ' + current.client;
      docs.appendChild(from);
    }
    if (current.kind === 'sign') {
      const who = document.createElement('li');
      who.textContent = texts['app.requester'] + ' ' + (current.requester || texts['app.from_portal']);
      docs.appendChild(who);
      for (const d of current.documents || []) {
        const li = document.createElement('li');
        li.className = 'document';
        li.textContent = (d.name || d.label) + (d.pages ? ' (' + d.pages + ' ' + texts['app.pages'] + ')' : '') +
          (d.digest ? ' — ' + texts['app.sha256'] + ' ' + d.digest : '');
        docs.appendChild(li);
      }
    }
    show('decide');
  }

  async function decide(decision) {
    if (!current) return;
    const r = current;
    try {
      const { challenge } = await call('approval-challenge', {
        device_id: device.deviceId, request_id: r.request_id,
      });
      const bytes = unb64(challenge);
      const signature = await sign(device.key, approvalMessage(unb64(r.statement), decision, bytes));
      const answer = await call('decide', {
        device_id: device.deviceId, request_id: r.request_id, decision: decision,
        pin: decision === 'approve' ? pin : '', challenge: challenge, signature: b64(signature),
      });
      pin = '';
      $('pin-display').textContent = '';
      if (answer.result === 'pin_wrong') {
        $('decide-status').textContent = texts['app.pin_wrong'] + ' ' + answer.remaining;
        return;
      }
      pending.delete(r.request_id);
      current = null;
      renderList();
      show('watching');
      $('device').textContent = texts['app.' + answer.result] || answer.result;
    } catch (e) {
      $('decide-status').textContent = e.message;
    }
  }

  // A PIN operation ('change' or 'reset'): a fresh challenge, the signed PIN message, the call.
  async function pinOperation(op, fields) {
    const { challenge } = await call('approval-challenge', { device_id: device.deviceId });
    const signature = await sign(device.key, pinMessage(op, device.deviceId, unb64(challenge)));
    return call(op === 'change' ? 'change-pin' : 'reset-pin', Object.assign({
      device_id: device.deviceId, challenge: challenge, signature: b64(signature),
    }, fields));
  }

  async function changePin(ev) {
    ev.preventDefault();
    const status = $('pin-status');
    if ($('new_pin').value !== $('new_pin2').value) {
      status.textContent = texts['app.pin_mismatch'];
      return;
    }
    try {
      const answer = await pinOperation('change',
        { old_pin: $('old_pin').value, new_pin: $('new_pin').value });
      status.textContent = answer.result === 'changed' ? texts['app.pin_changed']
        : answer.result === 'pin_wrong' ? texts['app.pin_wrong'] + ' ' + answer.remaining
          : texts['app.pin_blocked'];
    } catch (e) {
      status.textContent = e.message;
    }
    for (const id of ['old_pin', 'new_pin', 'new_pin2']) $(id).value = '';
  }

  async function resetPin(ev) {
    ev.preventDefault();
    const status = $('pin-status');
    if ($('reset_pin').value !== $('reset_pin2').value) {
      status.textContent = texts['app.pin_mismatch'];
      return;
    }
    try {
      await pinOperation('reset', { new_pin: $('reset_pin').value });
      status.textContent = texts['app.pin_reset'];
    } catch (e) {
      status.textContent = e.message;
    }
    for (const id of ['reset_pin', 'reset_pin2']) $(id).value = '';
  }

  function key(k) {
    if (k === '⌫') pin = pin.slice(0, -1);
    else if (k === '✓') { decide('approve'); return; }
    else if (pin.length < 8) pin += k;
    $('pin-display').textContent = '•'.repeat(pin.length);
  }

  async function watchLoop() {
    if (watching) return;
    watching = true;
    while (device) {
      try {
        const { challenge } = await call('challenge', { device_id: device.deviceId });
        const signature = await sign(device.key, unb64(challenge));
        const answer = await call('watch', {
          device_id: device.deviceId, challenge: challenge, signature: b64(signature),
          known: Array.from(pending.keys()),
        });
        if (answer.inactive) {
          watching = false;
          show('inactive');
          return;
        }
        for (const r of answer.requests) pending.set(r.request_id, r);
        // The list refreshes; a request being decided or the PIN settings stay open.
        if (screen === 'watching') renderList();
      } catch (e) {
        $('device').textContent = e.message;
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
    watching = false;
  }

  function startWatching() {
    show('watching');
    $('device').textContent = texts['app.enrolled_as'] + ' ' + device.name;
    renderList();
    watchLoop();
  }

  async function main() {
    if (!window.crypto || !crypto.subtle || !window.indexedDB) {
      $('app-status').textContent = texts['app.no_webcrypto'];
      return;
    }
    $('enrol-form').addEventListener('submit', enrol);
    $('approve').addEventListener('click', () => decide('approve'));
    $('deny').addEventListener('click', () => decide('deny'));
    $('back').addEventListener('click', () => { current = null; renderList(); show('watching'); });
    $('pin-menu').addEventListener('click', () => { $('pin-status').textContent = ''; show('pin-settings'); });
    $('pin-back').addEventListener('click', () => { renderList(); show('watching'); });
    $('change-pin-form').addEventListener('submit', changePin);
    $('reset-pin-form').addEventListener('submit', resetPin);
    $('reset').addEventListener('click', async () => { await dbClear(); device = null; show('enrol'); });
    for (const b of document.querySelectorAll('#pinpad .key')) {
      b.addEventListener('click', () => key(b.dataset.key));
    }
    setInterval(() => { if (!current && device) renderList(); }, 5000);
    device = await dbGet();
    if (device && device.deviceId) startWatching(); else show('enrol');
  }

  main();
})();
