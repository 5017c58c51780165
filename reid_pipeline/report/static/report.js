// Shared by the static report and the console (reid serve). No external resources.
(function () {
  // Marks each picture as loaded or broken (a deleted crop shows as a dashed outline) and
  // counts them on <body>, so a person or a test can tell at a glance that the page is whole.
  function mark() {
    var imgs = document.getElementsByTagName('img'), ok = 0, broken = 0;
    for (var i = 0; i < imgs.length; i++) {
      var good = imgs[i].complete && imgs[i].naturalWidth > 0;
      imgs[i].setAttribute('data-state', good ? 'ok' : 'broken');
      if (good) { ok++; } else { broken++; }
    }
    document.body.setAttribute('data-images-ok', ok);
    document.body.setAttribute('data-images-broken', broken);
  }

  // A link into the annotated video (data-seek="SECONDS") seeks the camera section's own
  // player instead of leaving the page; without a player the link opens the video file.
  function seek(video, t) {
    function go() { video.currentTime = t; }
    video.setAttribute('data-seek-to', t.toFixed(2));
    if (video.readyState >= 1) { go(); return; }
    video.addEventListener('loadedmetadata', go, { once: true });
    video.preload = 'auto';
    video.load();
  }

  function watchVideo(video) {
    video.addEventListener('error', function () {
      var e = video.error;
      video.setAttribute('data-state', 'error:' + (e ? e.code : '?'));
    });
    video.addEventListener('loadedmetadata', function () {
      video.setAttribute('data-state', 'ready');
    });
    video.addEventListener('seeked', function () {
      video.setAttribute('data-seeked', video.currentTime.toFixed(2));
    });
  }

  function wire() {
    var videos = document.getElementsByTagName('video');
    for (var i = 0; i < videos.length; i++) { watchVideo(videos[i]); }
    document.addEventListener('click', function (ev) {
      var a = ev.target.closest ? ev.target.closest('a[data-seek]') : null;
      if (!a) { return; }
      var section = a.closest('section.camera');
      var video = section ? section.querySelector('video') : null;
      if (!video) { return; }
      ev.preventDefault();
      seek(video, parseFloat(a.getAttribute('data-seek')));
      video.scrollIntoView({ block: 'nearest' });
    });
  }

  document.addEventListener('DOMContentLoaded', wire);
  window.addEventListener('load', mark);
})();
