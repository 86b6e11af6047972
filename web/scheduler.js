// One requestAnimationFrame for everything dirty on the page: charts and the app's own state
// pass register with `request(item)` (any object with a draw() method) and are drawn once, in
// the next frame.

export class Scheduler {
  constructor() {
    this.dirty = new Set();
    this.pending = false;
  }

  request(item) {
    this.dirty.add(item);
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => this.flush());
    }
  }

  // Things drawn first may dirty others (the app's state pass feeds the charts): a second
  // round in the same frame draws those too.
  flush() {
    for (let round = 0; round < 3 && this.dirty.size; round += 1) {
      const items = [...this.dirty];
      this.dirty.clear();
      for (const c of items) {
        try {
          c.draw();
        } catch (err) {
          console.error("mudpuppy: draw failed", err);
        }
      }
    }
    this.pending = false;
    if (this.dirty.size) this.request([...this.dirty][0]);
  }
}
