// The portal's live parts: the login page waits for the approval on the consent app.
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

  const status = document.getElementById('login-status');
  if (status) {
    const poll = async function () {
      let answer;
      try {
        answer = await post(status.dataset.poll);
      } catch (e) {
        status.textContent = texts['err.unavailable'];
        setTimeout(poll, 2000);
        return;
      }
      if (answer.state === 'approved') {
        status.textContent = texts['login.done'];
        window.location.assign(status.dataset.next);
      } else if (answer.state === 'pending') {
        poll();
      } else if (answer.state === 'error') {
        status.textContent = texts['err.unavailable'];
        setTimeout(poll, 2000);
      } else {
        status.textContent = texts['login.' + answer.state] || texts['login.expired'];
        status.classList.add('error');
      }
    };
    poll();
  }
})();
