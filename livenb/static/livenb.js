// livenb browser client: plain JavaScript, no dependencies, following docs/protocol.md.
//
//   import { LivenbClient } from "./livenb.js";
//   const client = new LivenbClient("ws://127.0.0.1:8765", { token });
//   client.onstatus = (state, detail) => console.log(state, detail);
//   client.subscribe("ticks.*", (record) => console.log(record.topic, record.seq, record.data),
//                    { onGap: (gap) => console.warn("lost", gap) });
//   const seq = await client.publish("chat", { text: "hi" });   // resolves once the hub stored it
//
// Browsers cannot set an Authorization header on a WebSocket, so the token goes in the first
// message ({"op":"auth"}). The client reconnects by itself (exponential backoff with full
// jitter) and resumes every subscription from the last seq it has (`since`), so nothing is
// lost within the hub's history, and every gap the hub reports reaches onGap. Unacknowledged
// publishes are resent with a producer id (`pid`), so the hub stores each once.

const FATAL_CLOSES = new Set([1000, 1002, 1003, 1007, 1008, 1009, 1010]);

function fatal(code) {
  return FATAL_CLOSES.has(code) || (code >= 4400 && code <= 4999);
}

function randomId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class LivenbClient {
  constructor(url, { token = null, reconnect = true, minDelay = 0.1, maxDelay = 10, maxPending = 10000 } = {}) {
    this.url = url;
    this.token = token;
    this.reconnect = reconnect;
    this.minDelay = minDelay;
    this.maxDelay = maxDelay;
    this.maxPending = maxPending;  // publishes kept until acknowledged (bounded)
    this.pid = randomId();
    this.onstatus = null;  // (state, detail) with state "connecting" | "open" | "closed" | "error"
    this.onerror = null;   // ({code, message, topic}) for err frames
    this.state = "connecting";
    this.epoch = null;
    this.hubTs = null;
    this.subs = new Map();      // pattern -> {callbacks, onGap, lastSeq: Map(topic -> seq)}
    this.unacked = new Map();   // frame number -> {frame, resolve, reject}
    this.nextFrame = 1;
    this.attempt = 0;
    this.stats = { received: 0, published: 0, gaps: 0, reconnects: 0, errors: 0 };
    this._closing = false;
    this._open();
  }

  _status(state, detail) {
    this.state = state;
    if (this.onstatus) this.onstatus(state, detail);
  }

  _open() {
    this._status("connecting", this.url);
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      if (this.token) ws.send(JSON.stringify({ op: "auth", token: this.token }));
      this.attempt = 0;
      for (const [pattern, sub] of this.subs) ws.send(JSON.stringify(this._subFrame(pattern, sub)));
      for (const entry of this.unacked.values()) ws.send(entry.frame);  // in order: a Map keeps it
      this._status("open", this.url);
    };
    ws.onmessage = (event) => this._handle(JSON.parse(event.data));
    ws.onclose = (event) => {
      if (this._closing) return this._status("closed", "closed by the page");
      const why = `${event.code}${event.reason ? " " + event.reason : ""}`;
      if (!this.reconnect || fatal(event.code)) {
        for (const entry of this.unacked.values()) entry.reject(new Error(`connection closed (${why})`));
        this.unacked.clear();
        return this._status("closed", why);
      }
      this.stats.reconnects += 1;
      const cap = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
      this.attempt += 1;
      const delay = Math.random() * cap;  // full jitter
      this._status("error", `${why}; reconnecting in ${delay.toFixed(1)} s`);
      setTimeout(() => this._open(), delay * 1000);
    };
  }

  // After a reconnect: resume from what we have (section 5.2.1 of docs/protocol.md).
  _subFrame(pattern, sub) {
    const frame = { op: "sub", topic: pattern };
    if (this.epoch === null) return frame;
    if (pattern.includes("*") || pattern.includes(">")) {
      frame.since = { epoch: this.epoch, topics: Object.fromEntries(sub.lastSeq) };
      if (this.hubTs !== null) frame.since.ts = this.hubTs;
    } else if (sub.lastSeq.has(pattern)) {
      frame.since = { epoch: this.epoch, seq: sub.lastSeq.get(pattern) };
    }
    return frame;
  }

  _matching(topic) {
    const out = [];
    for (const [pattern, sub] of this.subs) if (matches(pattern, topic)) out.push(sub);
    return out;
  }

  _handle(frame) {
    switch (frame.op) {
      case "msg": {
        const records = "batch" in frame ? frame.batch : [frame.data];
        this.hubTs = frame.ts;
        for (const sub of this._matching(frame.topic)) {
          const last = sub.lastSeq.get(frame.topic) ?? 0;
          records.forEach((data, i) => {
            const seq = frame.seq + i;
            if (seq <= last) return;  // a replay overlapping what we have
            for (const callback of sub.callbacks) callback({ topic: frame.topic, seq, ts: frame.ts, data });
          });
          sub.lastSeq.set(frame.topic, Math.max(last, frame.seq + records.length - 1));
        }
        this.stats.received += records.length;
        break;
      }
      case "subscribed": {
        if (this.epoch !== null && frame.epoch !== this.epoch) {
          for (const sub of this.subs.values()) sub.lastSeq.clear();
        }
        this.epoch = frame.epoch;
        this.hubTs = frame.ts;
        const sub = this.subs.get(frame.topic);
        // A concrete topic's position at subscription: resume from here if nothing arrives.
        // (Not on a resume's reply: the replay that follows starts before it.)
        if (sub && typeof frame.seq === "number" && frame.recovered === undefined && !sub.lastSeq.has(frame.topic)) {
          sub.lastSeq.set(frame.topic, frame.seq);
        }
        break;
      }
      case "gap": {
        this.stats.gaps += 1;
        const targets = frame.sub ? [this.subs.get(frame.sub)].filter(Boolean) : this._matching(frame.topic);
        for (const sub of targets) {
          if (frame.last !== null) sub.lastSeq.set(frame.topic, Math.max(sub.lastSeq.get(frame.topic) ?? 0, frame.last));
          if (sub.onGap) sub.onGap(frame);
        }
        break;
      }
      case "ack": {
        const entry = this.unacked.get(frame.id);
        if (entry) {
          this.unacked.delete(frame.id);
          entry.resolve(frame.seq);
        }
        break;
      }
      case "err": {
        this.stats.errors += 1;
        const entry = this.unacked.get(frame.id);
        if (entry) {
          this.unacked.delete(frame.id);
          entry.reject(new Error(`${frame.code}: ${frame.message}`));
        }
        if (this.onerror) this.onerror(frame);
        break;
      }
      default:
        break;  // pong, unsubscribed, and ops a newer hub may add
    }
  }

  subscribe(pattern, callback, { onGap = null } = {}) {
    let sub = this.subs.get(pattern);
    if (!sub) {
      sub = { callbacks: [], onGap, lastSeq: new Map() };
      this.subs.set(pattern, sub);
      if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ op: "sub", topic: pattern }));
    }
    sub.callbacks.push(callback);
    if (onGap) sub.onGap = onGap;
    return () => this.unsubscribe(pattern);
  }

  unsubscribe(pattern) {
    if (this.subs.delete(pattern) && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ op: "unsub", topic: pattern }));
    }
  }

  // Resolves to the record's seq once the hub stored it; rejects on err or a fatal close.
  publish(topic, data) {
    if (this._closing || this.state === "closed") {
      return Promise.reject(new Error("the client is closed"));
    }
    if (this.unacked.size >= this.maxPending) {
      return Promise.reject(new Error(`more than ${this.maxPending} publishes unacknowledged`));
    }
    const id = this.nextFrame++;
    const frame = JSON.stringify({ op: "pub", topic, data, id, pid: this.pid });
    this.stats.published += 1;
    return new Promise((resolve, reject) => {
      this.unacked.set(id, { frame, resolve, reject });
      if (this.ws.readyState === WebSocket.OPEN) this.ws.send(frame);
    });
  }

  close() {
    this._closing = true;
    for (const entry of this.unacked.values()) entry.reject(new Error("the client was closed"));
    this.unacked.clear();
    this.ws.close(1000);
  }
}

// Topic patterns (docs/protocol.md section 3): `*` one segment, `>` one or more trailing.
export function matches(pattern, topic) {
  const want = pattern.split(".");
  const have = topic.split(".");
  for (let i = 0; i < want.length; i++) {
    if (want[i] === ">") return have.length > i;
    if (i >= have.length) return false;
    if (want[i] !== "*" && want[i] !== have[i]) return false;
  }
  return want.length === have.length;
}
