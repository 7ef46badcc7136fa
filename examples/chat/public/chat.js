// The chat page's client (index.html): joins /ws?name=..., shows what the
// server sends (welcome, message, join, leave) and sends one line a message.
"use strict";
const $ = (id) => document.getElementById(id);
const status = $("status"), count = $("count"), messages = $("messages");
const joinForm = $("join-form"), form = $("form");
const input = $("message"), send = $("send");
let ws = null, me = null;

function setStatus(text, connected) {
  status.textContent = text;
  status.classList.toggle("connected", connected);
}

function scrollDown() { messages.scrollTop = messages.scrollHeight; }

// Every piece of text goes in with textContent, never innerHTML: names and
// messages are other people's input.
function span(cls, text) {
  const s = document.createElement("span");
  s.className = cls;
  s.textContent = text;
  return s;
}

function showMessage(m) {
  const li = document.createElement("li");
  li.className = "message" + (m.name === me ? " mine" : "");
  const time = new Date(m.time * 1000).toLocaleTimeString([],
    { hour: "2-digit", minute: "2-digit" }); // the reader's own clock
  li.append(span("name", m.name), span("text", m.text), span("time", time));
  messages.append(li);
  scrollDown();
}

function showNotice(text) {
  const li = document.createElement("li");
  li.className = "notice";
  li.textContent = text;
  messages.append(li);
  scrollDown();
}

function connect(name) {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  ws = new WebSocket(scheme + location.host + "/ws?name=" + encodeURIComponent(name));
  setStatus("connecting", false);
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "welcome") {
      me = m.name;
      m.history.forEach(showMessage);
      showNotice(`You joined as ${m.name}`);
      count.textContent = m.count;
      setStatus("connected", true);
      joinForm.hidden = true;
      form.hidden = false;
      send.disabled = false;
      input.focus();
    } else if (m.type === "message") {
      showMessage(m);
    } else if (m.type === "join" || m.type === "leave") {
      showNotice(`${m.name} ${m.type === "join" ? "joined" : "left"}`);
      count.textContent = m.count;
    }
  };
  ws.onclose = (e) => {
    setStatus("disconnected (" + e.code + ")", false);
    send.disabled = true;
  };
}

joinForm.onsubmit = (e) => {
  e.preventDefault();
  if (!ws) connect($("name").value.trim());
};

form.onsubmit = (e) => {
  e.preventDefault();
  if (input.value === "" || !ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(input.value);
  input.value = "";
};
