// The hub's page: connect, watch a topic, publish (see index.html).
import { LivenbClient } from "./livenb.js";

const $ = (id) => document.getElementById(id);
const MAX_LINES = 200;
let client = null;
const watching = new Set();  // patterns shown in the log, kept across reconnects

// The token can come in the URL's fragment (#token=...), which browsers never send to a server.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  $("token").value = fragment.get("token");
  history.replaceState(null, "", location.pathname + location.search);  // out of the address bar
}

// The hub's WebSocket is this page's own address (also through a proxy such as
// jupyter-server-proxy's /proxy/<port>/).
function hubUrl() {
  const url = new URL(".", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  return url.href;
}

function line(text, cls) {
  const item = document.createElement("li");
  if (cls) item.className = cls;
  item.textContent = text;
  $("log").prepend(item);
  while ($("log").children.length > MAX_LINES) $("log").lastChild.remove();
}

function connect() {
  if (client) client.close();
  client = new LivenbClient(hubUrl(), { token: $("token").value.trim() || null });
  client.onstatus = (state, detail) => {
    $("status").textContent = `${state}: ${detail}`;
    $("status").className = state;
  };
  client.onerror = (err) => line(`error ${err.code}: ${err.message}`, "gap");
  for (const pattern of watching) watch(pattern);  // a new connection keeps what was watched
}

function watch(pattern) {
  client.subscribe(pattern, (r) => line(`${r.topic} #${r.seq}  ${JSON.stringify(r.data)}`), {
    onGap: (g) => line(`gap on ${g.topic}: ${g.first}..${g.last ?? "?"} (${g.reason})`, "gap"),
  });
}

$("login").onsubmit = (event) => {
  event.preventDefault();  // nothing is ever submitted to a server
  connect();
};
$("watch").onclick = () => {
  if (!client) connect();
  const pattern = $("pattern").value.trim();
  if (watching.has(pattern)) return;  // already in the log
  watching.add(pattern);
  watch(pattern);
  line(`subscribed to ${pattern}`, "meta");
};
$("publish").onclick = async () => {
  if (!client) connect();
  let record;
  try {
    record = JSON.parse($("record").value);
  } catch (e) {
    $("result").textContent = `not JSON: ${e.message}`;
    return;
  }
  try {
    const seq = await client.publish($("topic").value.trim(), record);
    $("result").textContent = `stored as seq ${seq}`;
  } catch (e) {
    $("result").textContent = `refused: ${e.message}`;
  }
};
if ($("token").value) connect();
window.livenbPage = { connect, get client() { return client; } };  // for scripted checks
