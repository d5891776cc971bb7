// The approvals inbox: every tool call of the organization waiting for a decision, kept live over the
// organization's approvals websocket. New calls are fetched as server-rendered cards; decided ones leave.
(function () {
  "use strict";

  const root = document.getElementById("approvals");
  if (!root) return;
  const emptyEl = document.getElementById("approvals-empty");
  const statusEl = document.getElementById("approvals-status");
  const connectionEl = document.getElementById("connection");
  const toolCallBase = root.dataset.toolCallBase;
  const DECIDED = ["tool_call.approved", "tool_call.rejected", "tool_call.completed", "tool_call.failed", "tool_call.decided"];
  const PING_EVERY_MS = 20000;
  const SILENCE_LIMIT_MS = 40000; // no frame at all for this long: the connection is dead (e.g. after sleep)
  let socket = null;
  let retries = 0;
  let retryTimer = null;
  let lastHeard = Date.now();

  function setConnection(value, text) {
    connectionEl.dataset.state = value;
    connectionEl.textContent = text;
  }

  function updateEmpty() {
    emptyEl.hidden = root.querySelector(".tool-call") !== null;
  }

  function addCard(id) {
    if (document.getElementById("tc-" + id)) return Promise.resolve();
    return fetch(toolCallBase + id + "/?inbox=1", { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html || document.getElementById("tc-" + id)) return;
        const template = document.createElement("template");
        template.innerHTML = html.trim();
        const card = template.content.firstElementChild;
        if (card.dataset.status !== "pending") return;
        root.append(card);
        if (window.htmx) window.htmx.process(card);
        updateEmpty();
      });
  }

  function removeCard(data, type) {
    const card = document.getElementById("tc-" + data.id);
    if (!card) return;
    card.remove();
    if (data.tool_name) {
      statusEl.textContent = data.tool_name + ": " + type.replace("tool_call.", "");
    }
    updateEmpty();
  }

  function onFrame(frame) {
    if (frame.type === "approvals.snapshot") {
      const pending = new Set(frame.pending.map(function (call) { return call.id; }));
      root.querySelectorAll(".tool-call").forEach(function (card) {
        if (!pending.has(card.dataset.toolCallId)) card.remove();
      });
      frame.pending.forEach(function (call) { addCard(call.id); });
      updateEmpty();
    } else if (frame.type === "tool_call.pending") {
      addCard(frame.data.id);
    } else if (DECIDED.includes(frame.type)) {
      removeCard(frame.data, frame.type);
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(scheme + "//" + location.host + root.dataset.wsPath);
    socket = ws;
    ws.addEventListener("open", function () {
      retries = 0;
      lastHeard = Date.now();
      setConnection("live", "Live");
    });
    ws.addEventListener("message", function (message) {
      if (socket !== ws) return;
      lastHeard = Date.now();
      try {
        onFrame(JSON.parse(message.data));
      } catch (error) {
        console.error("bad frame", error);
      }
    });
    ws.addEventListener("close", function (close) {
      if (socket !== ws) return;
      socket = null;
      if (close.code === 4401 || close.code === 4403 || close.code === 4404) {
        setConnection("closed", "Disconnected: sign in again or reload the page.");
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    clearTimeout(retryTimer);
    const delay = Math.min(10000, 500 * Math.pow(2, retries)) + Math.random() * 250;
    retries += 1;
    setConnection("reconnecting", "Reconnecting…");
    retryTimer = setTimeout(connect, delay);
  }

  function drop() {
    // Give up on a connection that went quiet (a half-open socket after sleep says nothing, not even
    // "closed"): reconnect, and the new connection's snapshot brings the inbox up to date.
    const ws = socket;
    if (!ws) return;
    socket = null;
    ws.close();
    scheduleReconnect();
  }

  function reconnectNow() {
    if (!socket) {
      retries = 0;
      connect();
    }
  }

  setInterval(function () {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    if (Date.now() - lastHeard > SILENCE_LIMIT_MS) {
      drop();
    } else {
      socket.send(JSON.stringify({ type: "ping" }));
    }
  }, PING_EVERY_MS);
  window.addEventListener("online", reconnectNow);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") reconnectNow();
  });
  connect();

  // Used by the browser tests to simulate a network drop.
  window.SwitchboardApprovals = { drop: drop };
})();
