// Alerts for a person who is not looking at the page: desktop notifications (the browser's
// Notification API, switched on only by the NOTIFY button: permission is never asked on load), a
// count of unseen alerts in the tab title, and an optional tone made with WebAudio. Driven by the
// stream's `news` messages (docs/protocol.md): the daemon's notification rules and rate limits
// decide what is news, as for webhooks and the terminal bell. Everything is shown as text.
//
// "Not looking" means the tab is hidden or the window does not have the focus. News that
// arrives while the page is in front is seen (its toast is on screen): it raises nothing here.

const KEY_ON = "mudpuppy.notify";
const KEY_SOUND = "mudpuppy.sound";
const HEADLINES = {
  completed: "completed",
  failed: "failed",
  interrupted: "interrupted",
  crashed: "crashed",
  stalled: "stalled",
  nonfinite: "non-finite value",
  spike: "loss spike",
  eval_improved: "new best eval",
};
const SEVERE = new Set(["crashed", "failed", "nonfinite", "stalled"]);

export function headline(name, kind) {
  return `mudpuppy: ${name} ${HEADLINES[kind] || kind}`;
}

// localStorage may be missing or refuse (private modes, storage off): the page works without it
function load(key) {
  try {
    return window.localStorage.getItem(key);
  } catch (err) {
    return null;
  }
}

function save(key, value) {
  try {
    window.localStorage.setItem(key, value);
  } catch (err) {
    // not remembered; the toggle still works for this page
  }
}

export class DesktopAlerts {
  // toggle: the NOTIFY button; sound: the SOUND checkbox; onOpen(runId): a notification clicked
  constructor({ toggle, sound, onOpen }) {
    this.toggle = toggle;
    this.soundBox = sound;
    this.onOpen = onOpen;
    this.api = typeof window.Notification === "function" ? window.Notification : null;
    this.enabled = false;
    this.asking = false;
    this.unseen = 0;
    this.baseTitle = document.title;
    this.counts = { news: 0, notifications: 0, sounds: 0, failed: 0 };
    this.audio = null;

    // remembered "on" counts only while the browser still grants it: never ask on load
    this.enabled = load(KEY_ON) === "on" && this.permission() === "granted";
    this.sound = load(KEY_SOUND) === "on";
    this.soundBox.checked = this.sound;
    this.toggle.addEventListener("click", () => this.onToggle());
    this.soundBox.addEventListener("change", () => this.onSound());
    // the browser lets audio start only after a gesture on the page: the first one unlocks it
    const unlock = () => this.audio && this.audio.state === "suspended" && this.audio.resume();
    window.addEventListener("pointerdown", unlock, true);
    window.addEventListener("keydown", unlock, true);
    const seen = () => this.markSeen();
    window.addEventListener("focus", seen);
    document.addEventListener("visibilitychange", seen);
    this.render();
  }

  permission() {
    return this.api ? this.api.permission : "unsupported";
  }

  looking() {
    return document.visibilityState === "visible" && document.hasFocus();
  }

  async onToggle() {
    if (!this.api || this.asking) return;
    if (this.enabled) {
      this.enabled = false;
      save(KEY_ON, "off");
      this.render();
      return;
    }
    // asked on every switch-on (a click): the browser answers at once when it has decided
    // already, and prompts only while the permission is still open
    this.asking = true;
    this.render();
    try {
      await this.api.requestPermission();
    } catch (err) {
      // an old callback-only API or a refusal to ask: the permission below says what we have
    }
    this.asking = false;
    this.enabled = this.permission() === "granted";
    if (this.enabled) save(KEY_ON, "on");
    this.render();
  }

  onSound() {
    this.sound = this.soundBox.checked;
    save(KEY_SOUND, this.sound ? "on" : "off");
    if (this.sound) this.beep("test"); // this click is the gesture that lets audio start
  }

  // One `news` message ({run, rule, step, t, message}); `name` is the run's name as the page
  // shows it.
  news(m, name) {
    this.counts.news += 1;
    if (this.looking()) return;
    this.unseen += 1;
    this.renderTitle();
    if (this.enabled) this.notify(m, name);
    if (this.sound) this.beep(m.rule);
  }

  notify(m, name) {
    try {
      const n = new this.api(headline(name, m.rule), {
        body: String(m.message || ""),
        tag: `mudpuppy:${m.run}:${m.rule}`, // a newer one of the same run and rule replaces it
      });
      n.onclick = () => {
        window.focus();
        n.close();
        this.onOpen(m.run);
      };
      this.counts.notifications += 1;
    } catch (err) {
      // some browsers allow notifications only from a service worker: count it, keep going
      this.counts.failed += 1;
    }
  }

  beep(kind) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    try {
      if (!this.audio) this.audio = new Ctx();
      if (this.audio.state === "suspended") this.audio.resume();
      const ctx = this.audio;
      // two falling tones for trouble, one for other news; quiet, 0.15 s each
      const tones = SEVERE.has(kind) ? [880, 660] : [660];
      tones.forEach((hz, i) => {
        const t0 = ctx.currentTime + i * 0.18;
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.type = "sine";
        osc.frequency.value = hz;
        gain.gain.setValueAtTime(0.0001, t0);
        gain.gain.exponentialRampToValueAtTime(0.15, t0 + 0.01);
        gain.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.15);
        osc.connect(gain).connect(ctx.destination);
        osc.start(t0);
        osc.stop(t0 + 0.16);
      });
      this.counts.sounds += 1;
    } catch (err) {
      this.counts.failed += 1;
    }
  }

  markSeen() {
    if (this.unseen && this.looking()) {
      this.unseen = 0;
      this.renderTitle();
    }
  }

  renderTitle() {
    document.title = this.unseen ? `(${this.unseen}) ${this.baseTitle}` : this.baseTitle;
  }

  render() {
    const b = this.toggle;
    const perm = this.permission();
    let label = "NOTIFY OFF";
    let title = "desktop notifications for alerts while this tab is not in front (asks the browser on click)";
    if (!this.api) {
      label = "NOTIFY N/A";
      title = "this browser offers no desktop notifications here (they need https, or localhost through an SSH tunnel)";
    } else if (this.asking) {
      label = "NOTIFY \u2026";
    } else if (this.enabled) {
      label = "NOTIFY ON";
      title = "desktop notifications on: click to turn them off";
    } else if (perm === "denied") {
      label = "NOTIFY BLOCKED";
      title = "notifications are blocked for this site: allow them in the browser's site settings";
    }
    b.textContent = label;
    b.title = title;
    b.disabled = !this.api;
    b.setAttribute("aria-pressed", String(this.enabled));
    b.classList.toggle("on", this.enabled);
  }

  stats() {
    return {
      enabled: this.enabled,
      permission: this.permission(),
      sound: this.sound,
      unseen: this.unseen,
      audio: this.audio ? this.audio.state : null,
      ...this.counts,
    };
  }
}
