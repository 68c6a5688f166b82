"use strict";
// ragflow's web page: everything it shows comes from the REST API, called with the key typed in.
// Documents are untrusted: their text, paths and metadata go into the page as text nodes
// (textContent, el()), never as HTML.
(() => {
  const KEY = "ragflow.apiKey";
  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);
  let key = sessionStorage.getItem(KEY) || "";
  let me = null; // the latest /v1/status
  let seen = ""; // what the document views were last drawn from

  class Unauthorized extends Error {}

  // An element with properties and children; strings become text nodes.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function show(node, visible) { node.hidden = !visible; }
  function fail(node, error) {
    if (error instanceof Unauthorized) return;
    node.textContent = error.message || String(error);
    show(node, true);
  }

  // -- the API and its key -------------------------------------------------------------------------

  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    if (key) headers.set("Authorization", "Bearer " + key);
    const response = await fetch(path, { ...options, headers });
    if (response.status === 401) {
      askForKey(key ? "The server refused this key." : "This server needs an API key.");
      throw new Unauthorized("no key");
    }
    if (response.status === 429) {
      const body = await response.json().catch(() => null);
      askForKey(body && body.error ? body.error.message : "Too many requests with a wrong key; wait a minute.");
      throw new Unauthorized("rate limited");
    }
    return response;
  }

  async function apiJson(path, options) {
    const response = await api(path, options);
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const message = body && body.error ? body.error.message : response.statusText;
      const error = new Error(`${response.status}: ${message}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function askForKey(reason) {
    $("key-reason").textContent = reason;
    show($("key-panel"), true);
    $("key-input").focus();
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    key = $("key-input").value.trim();
    sessionStorage.setItem(KEY, key);
    $("key-input").value = "";
    show($("key-panel"), false);
    refresh(true);
  });

  $("forget-key").addEventListener("click", () => {
    key = "";
    sessionStorage.removeItem(KEY);
    location.reload();
  });

  // -- tabs ----------------------------------------------------------------------------------------

  for (const button of document.querySelectorAll(".tab-button")) {
    button.addEventListener("click", () => {
      for (const other of document.querySelectorAll(".tab-button")) other.removeAttribute("aria-current");
      button.setAttribute("aria-current", "page");
      for (const tab of document.querySelectorAll(".tab")) show(tab, tab.id === button.dataset.tab);
      if (button.dataset.tab === "documents") loadDocuments().catch((e) => fail($("doc-error"), e));
    });
  }

  // -- ask -----------------------------------------------------------------------------------------

  function filters() {
    return {
      filepath_globpattern: $("glob").value.trim() || null,
      metadata_filter: $("metadata-filter").value.trim() || null,
    };
  }

  $("ask-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = $("question").value.trim();
    if (!question) return;
    show($("ask-error"), false);
    const button = $("ask-button");
    button.disabled = true;
    try {
      if (document.querySelector("input[name=mode]:checked").value === "retrieve") await retrieve(question);
      else await answer(question);
    } catch (error) {
      fail($("ask-error"), error);
    } finally {
      button.disabled = false;
    }
  });

  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("ask-form").requestSubmit();
    }
  });

  async function answer(question) {
    show($("hits"), false);
    show($("answer"), true);
    $("answer-text").textContent = "…";
    $("answer-model").textContent = "";
    $("citations").replaceChildren();
    const body = { messages: [{ role: "user", content: question }], stream: true, k: Number($("k").value) || 4, ...filters() };
    const response = await api("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const error = await response.json().catch(() => null);
      throw new Error(`${response.status}: ${error && error.error ? error.error.message : response.statusText}`);
    }
    let text = "";
    let citations = [];
    for await (const chunk of events(response)) {
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.model) $("answer-model").textContent = "model: " + chunk.model;
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content;
      if (delta) {
        text += delta;
        drawAnswer(text, []);
      }
      if (chunk.citations) citations = chunk.citations;
    }
    drawAnswer(text, citations);
    $("citations").replaceChildren(...citations.map(citationItem));
    if (!citations.length) $("citations").append(el("li", { class: "muted", text: "no passage cited" }));
  }

  // The server-sent events of a streamed chat completion, parsed.
  async function* events(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
          yield JSON.parse(line.slice(6));
        }
      }
    }
  }

  // The answer's text, its [n] markers made links to the citations.
  function drawAnswer(text, citations) {
    const byNumber = new Map(citations.map((c) => [c.number, c]));
    const parts = [];
    let last = 0;
    for (const match of text.matchAll(/\[(\d{1,3})\]/g)) {
      parts.push(text.slice(last, match.index));
      const citation = byNumber.get(Number(match[1]));
      parts.push(citation
        ? el("a", { class: "cite", href: "#", title: citation.path || "", onclick: (e) => { e.preventDefault(); openPassage(citation); } }, match[0])
        : match[0]);
      last = match.index + match[0].length;
    }
    parts.push(text.slice(last));
    $("answer-text").replaceChildren(...parts);
  }

  function where(item) {
    const bits = [item.path || item.doc_id || "?"];
    if (item.page !== null && item.page !== undefined) bits.push(`page ${item.page}`);
    for (const [name, value] of Object.entries(item.location || {})) bits.push(`${name} ${value}`);
    if (item.start !== null && item.start !== undefined) bits.push(`chars ${item.start}–${item.end}`);
    if (typeof item.dist === "number") bits.push(`dist ${item.dist.toFixed(3)}`);
    return bits.join(" · ");
  }

  function citationItem(citation) {
    return el("li", { class: "citation", value: citation.number },
      el("span", { class: "where", text: where(citation) }), " ",
      el("button", { type: "button", class: "open", onclick: () => openPassage(citation) }, "Open in context"),
      el("blockquote", { text: citation.text }));
  }

  async function retrieve(question) {
    show($("answer"), false);
    const body = { query: question, k: Number($("k").value) || 4, ...filters() };
    const hits = await apiJson("/v1/retrieve", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    $("hits").replaceChildren(...hits.map((hit) => {
      const m = hit.metadata || {};
      const item = { doc_id: m.doc_id, path: m.path, page: m.page_number, start: m.start, end: m.end, dist: hit.dist, text: hit.text };
      return el("li", { class: "hit" },
        el("span", { class: "where", text: where(item) }), " ",
        el("button", { type: "button", class: "open", onclick: () => openPassage(item) }, "Open in context"),
        el("blockquote", { text: hit.text }),
        el("details", {}, el("summary", { text: "metadata" }), el("pre", { text: JSON.stringify(m, null, 2) })));
    }));
    if (!hits.length) $("hits").append(el("li", { class: "muted", text: "no passage matches" }));
    show($("hits"), true);
  }

  async function openPassage(item) {
    const query = new URLSearchParams({ doc_id: item.doc_id || item.path, start: item.start, end: item.end });
    if (item.page !== null && item.page !== undefined) query.set("page", item.page);
    $("passage-title").textContent = where({ ...item, dist: undefined });
    $("passage-before").textContent = "";
    $("passage-after").textContent = "";
    $("passage-text").textContent = item.text || "";
    $("passage").showModal();
    try {
      const found = await apiJson("/v1/passage?" + query);
      $("passage-before").textContent = found.before;
      $("passage-text").textContent = found.passage;
      $("passage-after").textContent = found.after;
    } catch (error) {
      if (!(error instanceof Unauthorized)) $("passage-after").textContent = `(${error.message})`;
    }
  }
  $("passage-close").addEventListener("click", () => $("passage").close());

  // -- status --------------------------------------------------------------------------------------

  async function refresh(force) {
    // no polling while the page waits for a key: each refused request counts against this client
    if (!force && (document.hidden || !$("key-panel").hidden)) return;
    let status;
    try {
      status = await apiJson("/v1/status");
    } catch (error) {
      if (!(error instanceof Unauthorized)) setBadge("unreachable", "failed");
      return;
    }
    me = status;
    setBadge(status.ready ? "ready" : "indexing…", status.ready ? "ready" : "");
    $("who").textContent = key ? `key: ${status.role}${status.scoped ? " (scoped)" : ""}` : "";
    show($("forget-key"), Boolean(key));
    show($("drop"), canUpload());
    drawCounts(status);
    drawProgress(status);
    drawFreshness(status.recent);
    const now = JSON.stringify([status.documents, status.recent.slice(-1), status.errors.length]);
    if (force || now !== seen) {
      seen = now;
      await Promise.all([loadErrors(), loadSources(), loadDocuments()]).catch((e) => fail($("doc-error"), e));
    }
  }

  function setBadge(text, kind) {
    const badge = $("ready");
    badge.textContent = text;
    badge.className = "badge " + kind;
  }

  function canUpload() { return Boolean(me && me.uploads && me.role !== "read"); }

  function drawCounts(status) {
    const d = status.documents;
    const rows = [["indexed", d.indexed], ["pending", d.pending], ["error", d.error]];
    if (status.embedding) rows.push(["chunks embedded", status.embedding.computed], ["from cache", status.embedding.cache_hits]);
    $("counts").replaceChildren(...rows.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { id: "count-" + name.replace(/ /g, "-"), text: value })]));
  }

  function drawProgress(status) {
    const p = status.progress;
    if (!p) {
      $("progress").replaceChildren(el("p", { class: "muted", text: "shown to keys that see every document" }));
      return;
    }
    const rate = status.embedding ? status.embedding.chunk_rate : 0;
    const done = p.snapshot_complete && p.chunks_embedded >= p.chunks_seen;
    $("progress").replaceChildren(
      el("progress", { max: Math.max(p.chunks_seen, 1), value: p.chunks_embedded }),
      el("p", { text: `${p.documents_done}/${p.documents_seen} documents, ${p.chunks_embedded}/${p.chunks_seen} chunks` }),
      el("p", { class: "muted", text: `${rate.toFixed(1)} chunks/s` + (done ? " · done" : p.eta ? ` · about ${Math.round(p.eta)} s left` : "") }));
  }

  // A bar per recently indexed document: seconds from the source seeing the change to it being searchable.
  function drawFreshness(recent) {
    if (!recent.length) {
      $("freshness").replaceChildren(el("p", { class: "muted", text: "no change indexed yet" }));
      return;
    }
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "chart");
    svg.setAttribute("viewBox", "0 0 300 100");
    svg.setAttribute("preserveAspectRatio", "none");
    const top = Math.max(...recent.map((r) => r.lag), 0.001);
    const width = 300 / Math.max(recent.length, 10);
    recent.forEach((r, i) => {
      const height = Math.max(1, (r.lag / top) * 95);
      const bar = document.createElementNS(ns, "rect");
      for (const [name, value] of Object.entries({ x: i * width + 1, y: 100 - height, width: width - 2, height })) bar.setAttribute(name, value);
      const title = document.createElementNS(ns, "title");
      title.textContent = `${r.path}: ${seconds(r.lag)}`;
      bar.append(title);
      svg.append(bar);
    });
    const lags = recent.map((r) => r.lag).sort((a, b) => a - b);
    const latest = recent[recent.length - 1];
    $("freshness").replaceChildren(svg, el("p", { class: "muted", id: "freshness-summary",
      text: `latest: ${latest.path} searchable ${seconds(latest.lag)} after the change · median ${seconds(lags[Math.floor(lags.length / 2)])} over the last ${recent.length}` }));
  }

  function seconds(value) { return value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(1)} s`; }
  function when(unix) { return unix ? new Date(unix * 1000).toLocaleTimeString() : ""; }

  async function loadErrors() {
    const errors = await apiJson("/v1/errors");
    $("errors").replaceChildren(...errors.map((e) => el("li", {}, el("span", { class: "where", text: e.doc_id }), ` (${e.stage}): `, el("span", { class: "error", text: e.message }))));
    if (!errors.length) $("errors").append(el("li", { class: "muted", text: "none" }));
  }

  async function loadSources() {
    if (!me || me.role !== "admin") {
      $("sources").replaceChildren(el("p", { class: "muted", text: "source health is shown to admin keys" }));
      return;
    }
    const sources = await apiJson("/v1/sources");
    const rows = sources.map((s) => el("tr", {},
      el("td", { text: s.name }), el("td", { text: s.kind }), el("td", { text: s.documents }),
      el("td", { text: s.snapshot_complete ? "listed" : "listing…" }),
      el("td", { class: s.healthy ? "state-INDEXED" : "state-ERROR", text: s.healthy ? "healthy" : `unhealthy: ${s.reason || ""}` })));
    $("sources").replaceChildren(el("table", {},
      el("thead", {}, el("tr", {}, ...["Source", "Kind", "Documents", "Snapshot", "Health"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows)));
  }

  // -- documents -----------------------------------------------------------------------------------

  async function loadDocuments() {
    const query = new URLSearchParams({ return_status: "true" });
    const glob = $("doc-glob").value.trim();
    const filter = $("doc-filter").value.trim();
    if (glob) query.set("filepath_globpattern", glob);
    if (filter) query.set("metadata_filter", filter);
    const docs = await apiJson("/v1/inputs?" + query);
    show($("doc-error"), false);
    const state = $("doc-state").value;
    const rows = docs.filter((d) => !state || d._indexing_status === state).map(documentRow);
    $("doc-table").tBodies[0].replaceChildren(...rows);
  }

  function documentRow(doc) {
    const id = doc.doc_id || doc.path;
    const deletable = canUpload() && typeof id === "string" && id.startsWith(me.uploads);
    const size = typeof doc.size === "number" ? `${doc.size} B` : "";
    return el("tr", { "data-doc": id },
      el("td", { class: "path", text: doc.path || id }),
      el("td", { class: "state-" + doc._indexing_status, text: { INDEXED: "indexed", INGESTED: "pending", ERROR: "error" }[doc._indexing_status] || doc._indexing_status }),
      el("td", { text: size }),
      el("td", { text: when(doc._indexed_at) }),
      el("td", { class: "error", text: doc._error || "" }),
      el("td", {}, deletable ? el("button", { type: "button", class: "delete", onclick: () => remove(id) }, "Delete") : null));
  }

  async function remove(id) {
    if (!confirm(`Delete ${id}?`)) return;
    const name = id.slice(me.uploads.length).split("/").map(encodeURIComponent).join("/");
    try {
      await apiJson(`/v1/documents/${name}?wait=30`, { method: "DELETE" });
      await refresh(true);
    } catch (error) {
      fail($("doc-error"), error);
    }
  }

  async function upload(files) {
    for (const file of files) {
      const line = el("li", { text: `${file.name}: uploading…` });
      $("uploads").prepend(line);
      const form = new FormData();
      form.append("file", file, file.name);
      try {
        const result = await apiJson("/v1/documents?wait=30", { method: "POST", body: form });
        line.textContent = `${result.path}: ${result.status.toLowerCase()}` + (result.error ? ` (${result.error})` : "");
      } catch (error) {
        line.textContent = `${file.name}: ${error.message}`;
        line.className = "error";
      }
    }
    await refresh(true);
  }

  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    upload([...event.dataTransfer.files]);
  });
  $("file-input").addEventListener("change", (event) => {
    upload([...event.target.files]);
    event.target.value = "";
  });
  $("doc-refresh").addEventListener("click", () => loadDocuments().catch((e) => fail($("doc-error"), e)));

  refresh(true);
  setInterval(refresh, POLL_MS);
})();
