// CareHub alarm board: a beep on a new red alarm (Web Audio, after a tap on "Lyd på"),
// no refresh while a nurse is filling in a resolve form, and 409 answers shown in place.
(function () {
  "use strict";
  var KEY = "carehub.board.sound";
  var audio = null;
  var sources = typeof WeakSet === "function" ? new WeakSet() : null;

  function toggle() { return document.getElementById("sound-toggle"); }
  function soundOn() {
    try { return window.localStorage.getItem(KEY) === "on"; } catch (e) { return false; }
  }
  function remember(on) {
    try { window.localStorage.setItem(KEY, on ? "on" : "off"); } catch (e) { /* private mode */ }
  }
  function context() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) { return null; }
    if (!audio) { audio = new Ctx(); }
    if (audio.state === "suspended") { audio.resume(); }
    return audio;
  }
  // Three short high beeps, twice: hard to mistake for a phone's own sounds.
  function beep() {
    var ctx = context();
    if (!ctx) { return; }
    var start = ctx.currentTime + 0.05;
    for (var i = 0; i < 6; i++) {
      var at = start + i * 0.25 + (i >= 3 ? 0.4 : 0);
      var osc = ctx.createOscillator();
      var gain = ctx.createGain();
      osc.type = "square";
      osc.frequency.setValueAtTime(i % 2 ? 988 : 880, at);
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.25, at + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.18);
      osc.connect(gain);
      gain.connect(ctx.destination);
      osc.start(at);
      osc.stop(at + 0.2);
    }
  }
  function show(on) {
    var button = toggle();
    if (!button) { return; }
    button.setAttribute("aria-pressed", on ? "true" : "false");
    var status = document.getElementById("sound-status");
    if (status) { status.textContent = on ? button.dataset.on : button.dataset.off; }
  }
  function onRed() {
    if (soundOn()) { beep(); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var button = toggle();
    if (!button) { return; }
    show(soundOn());
    button.addEventListener("click", function () {
      var on = !soundOn();
      remember(on);
      show(on);
      if (on) { beep(); } // the tap unlocks audio and lets the nurse hear what it sounds like
    });
    // A remembered "on" still needs one gesture after a reload before audio may play.
    document.addEventListener("pointerdown", function () { if (soundOn()) { context(); } }, { once: true });
  });

  // The SSE extension hands us each new EventSource; listen for "red" on it once.
  document.addEventListener("htmx:sseOpen", function (evt) {
    var source = evt.detail && evt.detail.source;
    if (!source || (sources && sources.has(source))) { return; }
    if (sources) { sources.add(source); }
    source.addEventListener("red", onRed);
  });

  // Do not swap the board away under a nurse who is choosing an outcome or writing a note;
  // the next event or the 10 s poll refreshes it once she is done.
  function busy(board) {
    var active = document.activeElement;
    return Boolean(board.querySelector("details.resolve[open]") || (active && active !== board && board.contains(active) && /^(SELECT|TEXTAREA|INPUT)$/.test(active.tagName)));
  }
  // The board's own refresh (not a form on it that targets it): ``source`` is the element whose
  // request it is (htmx names the swap's target, not the requester, in a swap event's ``elt``).
  function ownRefresh(source) {
    var board = document.getElementById("board");
    return board && source === board ? board : null;
  }
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var board = ownRefresh(evt.detail.elt);
    if (board && busy(board)) { evt.preventDefault(); }
  });

  document.addEventListener("htmx:beforeSwap", function (evt) {
    // A refused transition (409) carries the board with the reason: show it.
    if (evt.detail.xhr && evt.detail.xhr.status === 409) {
      evt.detail.shouldSwap = true;
      evt.detail.isError = false;
      return;
    }
    // A refresh already on its way when she opened the form must not close it either.
    var board = ownRefresh(evt.detail.requestConfig && evt.detail.requestConfig.elt);
    if (board && busy(board)) { evt.detail.shouldSwap = false; }
  });
})();
