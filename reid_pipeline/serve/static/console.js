// The operator console's behaviour: live tiles, the event feed, management forms, search.
// Plain DOM, no external resources; text from the server goes in through textContent,
// HTML only as rendered (and escaped) by the server's templates.
(function () {
  'use strict';

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  // ---------------------------------------------------------------- live tiles
  function startTiles() {
    var box = document.getElementById('tiles');
    if (!box) { return; }
    var mjpeg = box.getAttribute('data-mjpeg') === '1';
    var fps = parseFloat(box.getAttribute('data-fps')) || 5;
    var imgs = box.querySelectorAll('.tile img');
    Array.prototype.forEach.call(imgs, function (img) {
      var frames = 0;
      img.addEventListener('load', function () {
        frames++;
        img.setAttribute('data-frames', frames);
      });
      if (mjpeg) {
        img.src = img.getAttribute('data-src-mjpeg');
        return;
      }
      // many cameras: one frame at a time (a browser keeps only ~6 connections per server)
      var next = function () {
        setTimeout(function () {
          img.src = img.getAttribute('data-src-jpeg') + '?n=' + Date.now();
        }, 1000 / fps);
      };
      img.addEventListener('load', next);
      img.addEventListener('error', function () { setTimeout(next, 1000); });
      img.src = img.getAttribute('data-src-jpeg') + '?n=' + Date.now();
    });
    setInterval(function () {
      fetch('/api/cameras', { credentials: 'same-origin' }).then(function (r) {
        return r.ok ? r.json() : [];
      }).then(function (cams) {
        cams.forEach(function (c) {
          var fig = box.querySelector('.tile[data-camera="' + CSS.escape(c.name) + '"]');
          if (!fig) { return; }
          var st = fig.querySelector('.state');
          var text = c.state + (c.live ? ' ' + (c.fps || 0).toFixed(1) + ' fps' : '');
          st.textContent = text;
          st.setAttribute('data-state', c.state);
        });
      }).catch(function () {});
    }, 2000);
  }

  // ---------------------------------------------------------------- event feed
  function startFeed() {
    var alerts = document.getElementById('alerts');
    var events = document.getElementById('events');
    if (!alerts || !window.EventSource) { return; }
    var src = new EventSource('/api/events');
    src.addEventListener('stream', function (m) {
      var e = JSON.parse(m.data);
      var li = el('li', e.alert ? 'alert' : e.kind);
      li.setAttribute('data-alert', e.alert ? 'true' : 'false');
      li.setAttribute('data-identity', e.identity === null ? '' : e.identity);
      li.setAttribute('data-camera', e.camera);
      var when = new Date(e.captured * 1000).toLocaleTimeString();
      li.appendChild(el('span', 'when', when + ' '));
      li.appendChild(el('b', null, e.camera + ': '));
      if (e.url) {
        var a = el('a', null, '#' + e.identity + (e.name ? ' ' + e.name : ''));
        a.href = e.url;
        li.appendChild(a);
      } else {
        li.appendChild(el('span', null, 'unknown'));
      }
      li.appendChild(el('span', 'meta', ' ' + e.status + ', ' + e.kind +
        (e.score === null ? '' : ' p=' + e.score.toFixed(2))));
      var list = e.alert ? alerts : events;
      list.insertBefore(li, list.firstChild);
      while (list.children.length > 50) { list.removeChild(list.lastChild); }
      document.body.setAttribute('data-events', (parseInt(document.body.getAttribute('data-events') || '0', 10) + 1));
    });
    src.addEventListener('open', function () { document.body.setAttribute('data-feed', 'open'); });
    src.addEventListener('error', function () { document.body.setAttribute('data-feed', 'retrying'); });
  }

  // ---------------------------------------------------------------- management forms
  function wireForms() {
    var forms = document.querySelectorAll('form[data-api]');
    Array.prototype.forEach.call(forms, function (form) {
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        var q = form.getAttribute('data-confirm');
        if (q && !window.confirm(q)) { return; }
        var method = form.getAttribute('data-method') || 'POST';
        var body = null;
        var list = form.getAttribute('data-list');
        var data = {};
        Array.prototype.forEach.call(form.elements, function (f) {
          if (!f.name || f.type === 'submit') { return; }
          if (f.name === list) {
            if (f.checked) { (data[list] = data[list] || []).push(parseInt(f.value, 10)); }
          } else if (f.type === 'number') {
            data[f.name] = parseInt(f.value, 10);
          } else if (f.type === 'checkbox') {
            data[f.name] = f.checked;
          } else {
            data[f.name] = f.value;
          }
        });
        if (method !== 'DELETE' && method !== 'PUT') { body = JSON.stringify(data); }
        fetch('/api/' + form.getAttribute('data-api'), {
          method: method,
          credentials: 'same-origin',
          headers: body ? { 'Content-Type': 'application/json' } : {},
          body: body
        }).then(function (r) {
          if (r.ok) {
            var then = form.getAttribute('data-then');
            if (then) { window.location = then; } else { window.location.reload(); }
            return;
          }
          return r.json().then(function (j) {
            var msg = typeof j.detail === 'string' ? j.detail : JSON.stringify(j.detail);
            var p = form.querySelector('.error') || form.appendChild(el('p', 'error'));
            p.textContent = msg;
          });
        });
      });
    });
  }

  // ---------------------------------------------------------------- search by photo
  function wireSearch() {
    var form = document.getElementById('search-form');
    if (!form) { return; }
    var status = document.getElementById('search-status');
    var results = document.getElementById('results');
    function send(file) {
      var fd = new FormData(form);
      if (file) { fd.set('photo', file); }
      status.textContent = 'searching...';
      document.body.setAttribute('data-search', 'running');
      fetch('/search', {
        method: 'POST', body: fd, credentials: 'same-origin', headers: { 'X-Fragment': '1' }
      }).then(function (r) {
        return r.text().then(function (html) {
          results.innerHTML = html;  // rendered and escaped by the server's templates
          status.textContent = r.ok ? '' : 'the search failed';
          document.body.setAttribute('data-search', r.ok ? 'done' : 'failed');
        });
      });
    }
    form.addEventListener('submit', function (ev) { ev.preventDefault(); send(null); });
    form.addEventListener('dragover', function (ev) {
      ev.preventDefault();
      form.classList.add('over');
    });
    form.addEventListener('dragleave', function () { form.classList.remove('over'); });
    form.addEventListener('drop', function (ev) {
      ev.preventDefault();
      form.classList.remove('over');
      var files = ev.dataTransfer && ev.dataTransfer.files;
      if (files && files.length) { send(files[0]); }
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    wireForms();
    wireSearch();
    startFeed();
  });
  // tiles start after the page's own load: an endless MJPEG never holds the load event
  window.addEventListener('load', startTiles);
})();
