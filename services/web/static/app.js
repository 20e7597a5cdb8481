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
// - The app shows what it signs: it decodes the request's statement (the canonical bytes of
//   consent/statement.h, the bytes it signs) itself and builds the screen from it; when the
//   server's display fields (the code, who asks, the documents' names, pages and SHA-256, the
//   text) differ from the statement, it refuses to sign (approve or deny) and says so.
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

  // ---- the statement (consent/statement.h), decoded here: the app shows what it signs ----
  //   "QSIGN-CONSENT-STATEMENT-V1\n" || (tag, u32be length, value)*: kind 0x01, request id 0x02,
  //   account id 0x03, created 0x04, expires 0x05 (8 bytes each), text 0x06; login: code 0x10,
  //   client 0x11; sign: credential 0x20, relying party 0x21, hash algorithm 0x22, hashes 0x23*,
  //   documents 0x24* (label 0x01, name 0x02, SHA-256 0x03, pages 0x04 u32be if given).
  function fields(bytes) {
    const out = [];
    let at = 0;
    while (at < bytes.length) {
      if (bytes.length - at < 5) throw new Error('statement: truncated');
      const tag = bytes[at];
      const len = new DataView(bytes.buffer, bytes.byteOffset + at + 1, 4).getUint32(0);
      at += 5;
      if (len > bytes.length - at) throw new Error('statement: truncated');
      out.push([tag, bytes.subarray(at, at + len)]);
      at += len;
    }
    return out;
  }
  const text = (b) => new TextDecoder('utf-8', { fatal: true }).decode(b);
  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

  function decodeStatement(bytes) {
    const label = utf8('QSIGN-CONSENT-STATEMENT-V1\n');
    if (bytes.length < label.length || label.some((c, i) => bytes[i] !== c)) {
      throw new Error('statement: wrong label');
    }
    const f = fields(bytes.subarray(label.length));
    let i = 0;
    const next = (tag) => {
      if (i >= f.length || f[i][0] !== tag) throw new Error('statement: fields out of order');
      return f[i++][1];
    };
    const kind = next(0x01);
    if (kind.length !== 1 || (kind[0] !== 1 && kind[0] !== 2)) throw new Error('statement: kind');
    const s = { kind: kind[0] === 1 ? 'login' : 'sign', request_id: text(next(0x02)) };
    s.account_id = text(next(0x03));
    if (next(0x04).length !== 8 || next(0x05).length !== 8) throw new Error('statement: time');
    s.display_text = text(next(0x06));
    if (s.kind === 'login') {
      s.code = text(next(0x10));
      s.client = text(next(0x11));
    } else {
      s.credential_id = text(next(0x20));
      s.requester = text(next(0x21));
      s.hash_algorithm = text(next(0x22));
      s.hashes = [];
      while (i < f.length && f[i][0] === 0x23) s.hashes.push(f[i++][1]);
      s.documents = [];
      while (i < f.length && f[i][0] === 0x24) {
        const d = fields(f[i++][1]);
        const ok = (d.length === 3 || d.length === 4) && d[0][0] === 1 && d[1][0] === 2 &&
          d[2][0] === 3 && (d.length === 3 || (d[3][0] === 4 && d[3][1].length === 4));
        if (!ok) throw new Error('statement: malformed document');
        s.documents.push({
          label: text(d[0][1]), name: text(d[1][1]), digest: hex(d[2][1]),
          pages: d.length === 4 ? new DataView(d[3][1].buffer, d[3][1].byteOffset, 4).getUint32(0) : 0,
        });
      }
      if (s.hashes.length === 0) throw new Error('statement: no hashes');
      if (s.documents.length && s.documents.length !== s.hashes.length) {
        throw new Error('statement: documents do not match hashes');
      }
    }
    if (i !== f.length) throw new Error('statement: unexpected field');
    return s;
  }

  // What the app shows of request `r`, decoded from its statement; null when the statement does
  // not decode or the server's display fields say anything else than the statement.
  function shown(r) {
    let s;
    try {
      s = decodeStatement(unb64(r.statement));
    } catch (e) {
      return null;
    }
    if (s.request_id !== r.request_id || s.kind !== r.kind || s.display_text !== r.display_text) {
      return null;
    }
    if (s.kind === 'login') {
      return s.code === (r.code || '') && s.client === (r.client || '') ? s : null;
    }
    const docs = r.documents || [];
    const same = s.requester === (r.requester || '') && s.hashes.length === r.hashes &&
      s.documents.length === docs.length &&
      s.documents.every((d, k) => d.label === docs[k].label && d.name === docs[k].name &&
        d.pages === (docs[k].pages || 0) && d.digest === docs[k].digest);
    return same ? s : null;
  }

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

  // The request in the page's language, from its statement (what the app signs).
  function summary(r) {
    const s = shown(r);
    if (!s) return texts['app.statement_mismatch'];
    if (s.kind === 'login') return texts['app.login_summary'].replace('{code}', s.code);
    const names = s.documents.map((d) => d.name || d.label).join(', ');
    return texts['app.sign_summary'].replace('{count}', String(s.hashes.length))
      .replace('{names}', names || s.display_text);
  }

  function openRequest(id) {
    current = pending.get(id);
    if (!current) return;
    pin = '';
    $('pin-display').textContent = '';
    $('decide-status').textContent = '';
    const s = shown(current);
    $('req-docs').textContent = '';
    $('approve').disabled = !s;
    $('deny').disabled = !s;
    if (!s) {
      // The server's fields and the signed statement disagree: nothing to show, nothing to sign.
      $('req-title').textContent = texts['app.statement_mismatch'];
      $('req-text').textContent = '';
      $('req-statement').textContent = '';
      $('req-code').textContent = '';
      $('decide-status').textContent = texts['app.statement_mismatch'];
      show('decide');
      return;
    }
    $('req-title').textContent = s.kind === 'login' ? texts['app.kind.login'] : texts['app.kind.sign'];
    $('req-text').textContent = summary(current);
    // The service's own line, as it is inside the signed statement.
    $('req-statement').textContent = texts['app.statement'] + ' ' + s.display_text;
    $('req-code').textContent = s.code ? texts['app.code_is'] + ' ' + s.code : '';
    const docs = $('req-docs');
    if (s.kind === 'login' && s.client) {
      const from = document.createElement('li');
      from.id = 'req-client';
      from.textContent = texts['app.from'] + ' ' + s.client;
      docs.appendChild(from);
    }
    if (s.kind === 'sign') {
      const who = document.createElement('li');
      who.textContent = texts['app.requester'] + ' ' + (s.requester || texts['app.from_portal']);
      docs.appendChild(who);
      for (const d of s.documents) {
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
    // Sign only a statement that says what the screen showed (checked again on these bytes).
    if (!shown(r)) {
      $('decide-status').textContent = texts['app.statement_mismatch'];
      return;
    }
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
