/* kindling website tag, served at /v1/tag.js: see "The website tag" in the README. */
(function (w, d) {
  "use strict";
  var queued = w.kindling, nav = w.navigator, loc = w.location;
  if (queued && queued.loaded) return;
  var api = { loaded: true, version: "1.0.0", errors: 0 };
  var cfg, url, anon, uid, off, buf = [], bytes = 0, timer;
  var me = d.currentScript, scriptHost = me ? me.src.replace(/\/v1\/tag\.js.*/, "") : "";

  function guard(fn) {
    return function () {
      try {
        return fn.apply(api, arguments);
      } catch (e) {
        api.errors++;
      }
    };
  }

  function store(key, value) {
    try {
      var ls = w.localStorage;
      if (value === undefined) return ls.getItem(key);
      value === null ? ls.removeItem(key) : ls.setItem(key, value);
    } catch (e) {}
    return null;
  }

  function cookie(value) {
    if (value) d.cookie = "kdl_aid=" + value + "; path=/; max-age=31536000; SameSite=Lax" +
      (loc.protocol == "https:" ? "; Secure" : "");
    var m = /(?:^|; )kdl_aid=([\w-]+)/.exec(d.cookie);
    return m && m[1];
  }

  function uuid() {
    return "10000000-1000-4000-8000-100000000000".replace(/[018]/g, function (c) {
      return (c ^ (w.crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16);
    });
  }

  function pageInfo() {
    return { url: loc.href.split("#")[0], path: loc.pathname, title: d.title, referrer: d.referrer,
      search: loc.search };
  }

  function enqueue(type, fields) {
    if (off) return;
    if (!cfg) throw Error("call load() first");
    var context = { page: pageInfo(), userAgent: nav.userAgent, locale: nav.language,
      library: { name: "kindling-tag", version: api.version } };
    var m = { type: type, messageId: uuid(), anonymousId: anon, originalTimestamp: new Date().toISOString(),
      context: context };
    var utm = new URLSearchParams(loc.search);
    ["source", "medium", "campaign", "term", "content"].forEach(function (k) {
      var v = utm.get("utm_" + k);
      if (v) (context.campaign = context.campaign || {})[k == "campaign" ? "name" : k] = v;
    });
    if (uid) m.userId = uid;
    for (var k in fields) m[k] = fields[k];
    var size = new Blob([JSON.stringify(m)]).size; // throws on a circular object
    if (size > 32000) throw Error("event over 32 KB");
    if (bytes + size > 56000) flush(); // beacon and keepalive limit: 64 KB
    buf.push(m);
    bytes += size;
    if (buf.length > 19) flush();
    else timer = timer || setTimeout(guard(flush), 250);
  }

  function body(batch) {
    return JSON.stringify({ batch: batch, writeKey: cfg.writeKey, sentAt: new Date().toISOString() });
  }

  // batches not yet accepted
  function outbox(list) {
    if (list) return store("kdl_outbox", list.length ? JSON.stringify(list.slice(-50)) : null);
    try {
      return JSON.parse(store("kdl_outbox")) || [];
    } catch (e) {
      return [];
    }
  }

  function flush(leaving) {
    clearTimeout(timer);
    timer = 0;
    var batch = buf;
    buf = [];
    bytes = 0;
    if (!batch.length || (leaving === true && nav.sendBeacon && nav.sendBeacon(url, body(batch)))) return;
    var entry = { id: uuid(), batch: batch, tries: 0 };
    outbox(outbox().concat([entry]));
    send(entry);
  }

  function send(entry) {
    var data = body(entry.batch);
    fetch(url, { method: "POST", body: data, keepalive: data.length < 60000, credentials: "omit" }).then(
      guard(function (r) {
        done(entry, r.ok, r.status > 499 || r.status == 429);
      }),
      guard(function () {
        done(entry, false, true);
      })
    );
  }

  function done(entry, ok, retry) {
    var list = outbox().filter(function (e) {
      return e.id != entry.id;
    });
    if (!ok && retry && ++entry.tries < 10) {
      list.push(entry);
      var wait = Math.min(60000, 1000 * Math.pow(2, entry.tries)) * (0.5 + Math.random() / 2);
      setTimeout(guard(function () {
        // unless another page of the site has delivered it meanwhile
        if (outbox().some(function (e) { return e.id == entry.id; })) send(entry);
      }), wait);
    } else if (!ok) api.errors++;
    outbox(list);
  }

  function onSubmit(event) {
    var form = event.target, email, traits = {};
    if (!form.elements || form.hasAttribute("data-kindling-ignore")) return;
    [].forEach.call(form.elements, function (el) {
      var name = el.name || el.id, value = String(el.value || "").trim();
      if (!value || el.type == "password" || el.type == "hidden") return;
      if (!email && (el.type == "email" || /e-?mail/i.test(name)) && value.indexOf("@") > 0) email = value;
      else if (/^(first_?name|last_?name|name|company|title|job_?title)$/i.test(name)) traits[name] = value;
    });
    if (email) {
      api.identify(email, traits);
      flush(true);
    }
  }

  api.load = guard(function (o) {
    if (cfg) return;
    if (!o.writeKey) throw Error("load() needs a writeKey");
    var host = String(o.host || scriptHost).replace(/\/+$/, "");
    url = (/^https?:/.test(host) ? host : "https://" + host) + "/v1/batch";
    cfg = o;
    if (o.respectDoNotTrack && (nav.doNotTrack == "1" || w.doNotTrack == "1" || nav.globalPrivacyControl)) {
      return (off = true);
    }
    anon = cookie() || store("kdl_aid") || uuid();
    cookie(anon);
    store("kdl_aid", anon);
    uid = store("kdl_uid");
    var leave = guard(function (e) {
      if (e.type == "pagehide" || d.visibilityState == "hidden") flush(true);
    });
    w.addEventListener("pagehide", leave);
    d.addEventListener("visibilitychange", leave);
    if (o.captureForms) d.addEventListener("submit", guard(onSubmit), true);
    outbox().forEach(send); // what earlier pages could not deliver
    if (o.page !== false) api.page();
  });

  // page([name], [properties])
  api.page = guard(function (name, properties) {
    if (name && typeof name == "object") (properties = name), (name = null);
    var fields = { properties: Object.assign(pageInfo(), properties) };
    if (name) fields.name = String(name);
    enqueue("page", fields);
  });

  api.track = guard(function (event, properties) {
    if (!event) throw Error("track() needs an event name");
    enqueue("track", { event: String(event), properties: Object.assign({}, properties) });
  });

  // identify(userIdOrEmail, [traits])
  api.identify = guard(function (id, traits) {
    if (id && typeof id == "object") (traits = id), (id = "");
    traits = Object.assign({}, traits);
    id = id == null ? "" : String(id);
    if (id.indexOf("@") > -1) traits.email = id;
    else if (id) store("kdl_uid", (uid = id));
    enqueue("identify", { traits: traits });
  });

  api.flush = guard(flush);

  // replay what the snippet queued, load() first
  w.kindling = api;
  guard(function () {
    var calls = [].slice.call(queued || []);
    calls.sort(function (a, b) {
      return (b[0] == "load") - (a[0] == "load");
    });
    calls.forEach(function (c) {
      if (typeof api[c[0]] == "function") api[c[0]].apply(api, c[1]);
    });
  })();
})(window, document);
