// The portal's live parts: the login and signing pages wait for the approval on the consent app.
// No inline script: the page gives the poll URL in data-* attributes and texts in #texts.
'use strict';

(function () {
  const texts = JSON.parse(document.getElementById('texts').textContent);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  async function post(url) {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'X-CSRF-Token': csrf },
      credentials: 'same-origin',
    });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    return res.json();
  }

  // Polls `el.dataset.poll` until the app has decided; `prefix` names the texts of the outcomes
  // ("login." or "sign."); `done` gets the final answer.
  function waitForApp(el, prefix, finalState, done) {
    const poll = async function () {
      let answer;
      try {
        answer = await post(el.dataset.poll);
      } catch (e) {
        answer = { state: 'error' };
      }
      if (answer.state === 'pending') {
        poll();
      } else if (answer.state === 'error') {
        el.textContent = texts['err.unavailable'];
        setTimeout(poll, 2000);
      } else if (answer.state === finalState) {
        el.textContent = texts[prefix + 'done'];
        done(answer);
      } else if (el.dataset.page && /_failed$/.test(answer.state)) {
        // The TSA or an OCSP responder failed after the approval: the page says which.
        window.location.assign(el.dataset.page);
      } else {
        el.textContent = texts[prefix + answer.state] || texts[prefix + 'expired'];
        el.classList.add('error');
      }
    };
    poll();
  }

  // The login page: on to the account once the app approved.
  const status = document.getElementById('login-status');
  if (status) {
    waitForApp(status, 'login.', 'approved', () => window.location.assign(status.dataset.next));
  }

  // The signing page: the download once signed.
  const signing = document.getElementById('sign-status');
  if (signing) {
    waitForApp(signing, 'sign.', 'done', (answer) => {
      const link = document.getElementById('download');
      link.href = answer.download;
      link.hidden = false;
    });
  }
})();
