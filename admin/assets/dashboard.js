// The distcache dashboard: polls the admin JSON endpoints every second and renders them.
// Rates come from the difference of two successive counter reads. Data is inserted as text
// (never as HTML). A bearer token can be given in the URL fragment: /dashboard#token=SECRET.
"use strict";

(() => {
  const POLL_MS = 1000;
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  let previous = null; // { time, stats: Map(keyspace name -> stats) }

  const $ = (id) => document.getElementById(id);

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "class") node.className = value;
      else if (key === "style") node.style.cssText = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : String(child ?? ""));
    }
    return node;
  }

  const percent = (ratio) => (ratio == null ? "–" : `${(ratio * 100).toFixed(1)}%`);
  const rate = (perSecond) => (perSecond == null ? "–" : perSecond.toFixed(1));

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
  }

  // A distinct, stable colour per ring position.
  const colour = (index) => `hsl(${(index * 137) % 360} 60% 50%)`;

  function badge(text, kind) {
    return el("span", { class: `badge ${kind}` }, text);
  }

  function breakerBadge(state) {
    if (state == null) return "–";
    return badge(state.replace("_", "-"), { closed: "ok", half_open: "warn", open: "bad" }[state]);
  }

  async function getJson(path) {
    const response = await fetch(path, { headers, cache: "no-store" });
    // /readyz answers 503 with a JSON body when the node is not ready.
    if (!response.ok && response.status !== 503) {
      throw new Error(`${path}: HTTP ${response.status}`);
    }
    return response.json();
  }

  function renderHeader(peers, readiness) {
    const self = peers.find((p) => p.is_self);
    $("node").textContent = self ? self.node_id : "standalone";
    const status = $("readiness");
    status.textContent = readiness.ready ? "ready" : `not ready: ${readiness.reason}`;
    status.className = `badge ${readiness.ready ? "ok" : "bad"}`;
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  function renderPeers(peers) {
    const rows = peers.map((p) => {
      const admin = p.admin_addr
        ? el("a", { href: `${location.protocol}//${p.admin_addr}/` }, p.admin_addr)
        : "–";
      const state = { in_ring: "ok", ready: "warn", not_ready: "bad" }[p.state];
      return el(
        "tr",
        { "data-node": p.node_id },
        el("td", { class: p.is_self ? "self node" : "node" }, p.node_id, p.is_self ? " (this node)" : ""),
        el("td", { class: "state" }, badge(p.state.replace("_", " "), state)),
        el("td", { class: "ready" }, p.ready ? "yes" : "no"),
        el("td", { class: "breaker" }, p.is_self ? "–" : breakerBadge(p.breaker)),
        el("td", { class: "num ownership" }, percent(p.ownership)),
        el("td", { class: "keyspaces" }, p.keyspaces_match ? "match" : badge("drift", "bad")),
        el("td", {}, p.grpc_addr ?? "–"),
        el("td", {}, admin),
      );
    });
    if (rows.length === 0) {
      rows.push(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "standalone: no peers")));
    }
    $("peers").tBodies[0].replaceChildren(...rows);
  }

  function renderRing(ring) {
    if (ring == null) {
      $("epoch").textContent = "(standalone: this node owns every key)";
      $("ownership").replaceChildren();
      $("legend").replaceChildren();
      return;
    }
    $("epoch").textContent = `(ring epoch ${ring.epoch})`;
    $("ownership").replaceChildren(
      ...ring.members.map((m, i) =>
        el("div", { title: `${m.node_id}: ${percent(m.ownership)}`, style: `width: ${m.ownership * 100}%; background: ${colour(i)}` }),
      ),
    );
    $("legend").replaceChildren(
      ...ring.members.map((m, i) =>
        el("li", { "data-member": m.node_id }, el("span", { class: "swatch", style: `background: ${colour(i)}` }), `${m.node_id} ${percent(m.ownership)}`),
      ),
    );
  }

  function renderKeyspaces(keyspaces, now) {
    const seconds = previous ? (now - previous.time) / 1000 : 0;
    const rows = keyspaces.map((k) => {
      const s = k.stats;
      const before = previous?.stats.get(k.name);
      const perSecond = (field) => (before && seconds > 0 ? Math.max(0, s[field] - before[field]) / seconds : null);
      const recentGets = before ? s.gets - before.gets : 0;
      const recentRatio = recentGets > 0 ? (s.hits - before.hits) / recentGets : null;
      return el(
        "tr",
        { "data-keyspace": k.name },
        el("td", { class: "name" }, k.name),
        el("td", { class: "num hit-ratio" }, percent(s.hit_ratio)),
        el("td", { class: "num hit-ratio-recent" }, percent(recentRatio)),
        el("td", { class: "num gets-rate" }, rate(perSecond("gets"))),
        el("td", { class: "num fetch-rate" }, rate(perSecond("fetches"))),
        el("td", { class: "num fetch-error-rate" }, rate(perSecond("fetch_errors"))),
        el("td", { class: "num entries" }, s.entries),
        el("td", { class: "num bytes" }, bytes(s.bytes)),
        el("td", { class: "num budget" }, percent(s.max_bytes > 0 ? s.bytes / s.max_bytes : null)),
        el("td", { class: "breaker" }, breakerBadge(s.breaker)),
      );
    });
    if (rows.length === 0) {
      rows.push(el("tr", {}, el("td", { colspan: 10, class: "muted" }, "no keyspaces")));
    }
    $("keyspaces").tBodies[0].replaceChildren(...rows);
    previous = { time: now, stats: new Map(keyspaces.map((k) => [k.name, k.stats])) };
  }

  function showError(message) {
    const box = $("error");
    box.hidden = message == null;
    box.textContent = message ?? "";
  }

  async function poll() {
    try {
      const [peers, ring, keyspaces, readiness] = await Promise.all([
        getJson("v1/peers"),
        getJson("v1/ring"),
        getJson("v1/keyspaces"),
        getJson("readyz"),
      ]);
      renderHeader(peers, readiness);
      renderPeers(peers);
      renderRing(ring);
      renderKeyspaces(keyspaces, performance.now());
      showError(null);
    } catch (err) {
      showError(`cannot reach the admin API: ${err.message}`);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
