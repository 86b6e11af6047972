// The WebSocket to /ws: reconnects with exponential backoff (0.5 s doubling up to 30 s, with
// jitter), reports its state, and re-sends the subscription and the open logs after every
// (re)connect.
//
// States: "connecting" -> "live" -> ("reconnecting" | "disconnected") -> "connecting" ...
// "disconnected" means the backoff has reached its ceiling: the server has been gone a while.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 30000;

export function backoffDelay(attempt, rand = Math.random) {
  const d = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt);
  // +-20 % jitter so many tabs do not reconnect in lockstep; never above the ceiling
  return Math.min(MAX_DELAY_MS, Math.round(d * (0.8 + 0.4 * rand())));
}

export class Socket {
  constructor({ url, onMessage, onState }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState;
    this.ws = null;
    this.attempt = 0;
    this.retryAt = 0;
    this.timer = null;
    this.subscription = null;
    this.logRuns = null; // runs whose output lines the page shows
    this.state = "idle";
    this.closedByUser = false;
  }

  start() {
    this.closedByUser = false;
    this.connect();
  }

  stop() {
    this.closedByUser = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
  }

  setState(state) {
    this.state = state;
    this.onState(state, this);
  }

  connect() {
    clearTimeout(this.timer);
    this.setState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.setState("live");
      if (this.subscription !== null) this.sendSubscription();
      if (this.logRuns !== null) this.send({ type: "logs", runs: this.logRuns });
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (err) {
        console.warn("mudpuppy: bad message", err);
        return;
      }
      this.onMessage(msg);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!this.closedByUser) this.scheduleRetry();
      else this.setState("idle");
    };
    // errors are followed by close; nothing to do here (and no console noise)
    ws.onerror = () => {};
  }

  scheduleRetry() {
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.retryAt = performance.now() + delay;
    this.timer = setTimeout(() => this.connect(), delay);
    this.setState(delay >= MAX_DELAY_MS * 0.8 ? "disconnected" : "reconnecting");
  }

  // Seconds until the next attempt (for the "reconnecting in Ns" label).
  retryInS() {
    return Math.max(0, Math.ceil((this.retryAt - performance.now()) / 1000));
  }

  retryNow() {
    if (this.state === "reconnecting" || this.state === "disconnected") this.connect();
  }

  subscribe(runs) {
    const same = JSON.stringify(runs) === JSON.stringify(this.subscription);
    this.subscription = runs;
    // (re)sent on every open; while live only when it changed
    if (this.state === "live" && !same) this.sendSubscription();
  }

  // The runs whose output lines to stream (re-sent after every reconnect, like the subscription).
  openLogs(runs) {
    const same = JSON.stringify(runs) === JSON.stringify(this.logRuns);
    this.logRuns = runs;
    if (this.state === "live" && !same) this.send({ type: "logs", runs });
  }

  sendSubscription() {
    this.send({ type: "subscribe", runs: this.subscription });
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }
}
