// updraft: live parts of pages, without a framework.
// - An element with data-refresh="<ms>" is re-fetched from the same URL and swapped in place;
//   refreshing stops once the server sends it without data-refresh (the run finished).
// - An element with data-stream="<url>" follows a task log over server-sent events.
(function () {
  "use strict";

  function refresh(el) {
    var every = parseInt(el.getAttribute("data-refresh"), 10) || 3000;
    var id = el.id;
    setTimeout(function tick() {
      fetch(window.location.href, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById(id);
          var current = document.getElementById(id);
          if (!fresh || !current) return;
          current.replaceWith(fresh);
          localize(fresh);
          if (fresh.hasAttribute("data-refresh")) setTimeout(tick, every);
        })
        .catch(function () { setTimeout(tick, every * 2); });
    }, every);
  }

  // Times: the server writes "YYYY-MM-DD HH:MM:SS UTC"; a user who chose local time (the
  // header's switch, remembered per user in this browser) sees them in the browser's zone.
  var STAMP = /(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(\.\d+)? UTC/g;
  function tzKey() {
    var user = document.querySelector("header .user");
    return "updraft.tz." + (user ? user.textContent : "");
  }
  function wantsLocal() {
    try { return window.localStorage.getItem(tzKey()) === "local"; } catch (e) { return false; }
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function toLocal(all, day, time, frac) {
    var d = new Date(day + "T" + time + (frac || "") + "Z");
    if (isNaN(d.getTime())) return all;
    var zone = d.toLocaleTimeString("en-US", { timeZoneName: "short" }).split(" ").pop();
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + " " + zone;
  }
  function localize(root) {
    if (!root || !wantsLocal()) return;
    var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    var node;
    while ((node = walker.nextNode())) {
      if (STAMP.test(node.nodeValue)) node.nodeValue = node.nodeValue.replace(STAMP, toLocal);
      STAMP.lastIndex = 0;
    }
    (root.querySelectorAll ? root.querySelectorAll("[title]") : []).forEach(function (el) {
      var t = el.getAttribute("title");
      if (STAMP.test(t)) el.setAttribute("title", t.replace(STAMP, toLocal));
      STAMP.lastIndex = 0;
    });
  }
  function zoneSwitch() {
    var button = document.getElementById("tz-switch");
    if (!button) return;
    var local = wantsLocal();
    button.textContent = local ? "Times: local" : "Times: UTC";
    button.addEventListener("click", function () {
      try { window.localStorage.setItem(tzKey(), local ? "utc" : "local"); } catch (e) { return; }
      window.location.reload();
    });
  }

  function follow(log) {
    var url = log.getAttribute("data-stream");
    var source = new EventSource(url);
    var status = document.getElementById("tailing");
    source.addEventListener("line", function (e) {
      var l = JSON.parse(e.data);
      var empty = document.getElementById("log-empty");
      if (empty) empty.remove();
      var row = document.createElement("div");
      row.className = "line " + l.stream;
      row.setAttribute("data-id", l.id);
      var ts = document.createElement("span");
      ts.className = "ts";
      ts.textContent = l.at;
      var text = document.createElement("span");
      text.className = "text";
      text.textContent = l.line;
      row.appendChild(ts);
      row.appendChild(text);
      var atBottom = window.innerHeight + window.scrollY >= document.body.offsetHeight - 40;
      log.appendChild(row);
      if (atBottom) window.scrollTo(0, document.body.scrollHeight);
    });
    source.addEventListener("end", function (e) {
      source.close();
      var badge = document.querySelector("#ti-state .state");
      if (badge && /^[a-z_]+$/.test(e.data)) {
        badge.className = "state state-" + e.data;
        badge.textContent = e.data;
      }
      log.removeAttribute("data-stream");
      log.setAttribute("data-ended", "true");
      if (status) status.textContent = "The task has ended.";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    zoneSwitch();
    localize(document.querySelector("main"));
    document.querySelectorAll("[data-refresh]").forEach(refresh);
    document.querySelectorAll("[data-stream]").forEach(follow);
  });
})();

// Admin import forms: a chosen file's text goes into the form's textarea
// (`<input type="file" data-fill="textarea-id">`), so no multipart upload is needed.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("input[type=file][data-fill]").forEach(function (input) {
      input.addEventListener("change", function () {
        var target = document.getElementById(input.getAttribute("data-fill"));
        var file = input.files && input.files[0];
        if (!target || !file) return;
        var reader = new FileReader();
        reader.onload = function () { target.value = reader.result; };
        reader.readAsText(file);
      });
    });
  });
})();
