// Track store: the run's tracks by id (summary rows), their order, and stored boxes per frame
// (fetched in windows of frames). Views subscribe; the store never touches the DOM.
import { api } from './api.js';

const WINDOW = 600; // frames of boxes fetched at once

export class TrackStore extends EventTarget {
  constructor() {
    super();
    this.run = null;
    this.byId = new Map();
    this.order = [];
    this.windows = new Map(); // window start -> Promise<{frame: [[id,x,y,w,h],...]}>
  }

  async load(run) {
    this.run = run;
    this.windows.clear();
    const rows = await api.tracks(run);
    this.byId = new Map(rows.map((t) => [t.id, t]));
    this.order = rows.map((t) => t.id);
    this.emit('reset');
  }

  get(id) { return this.byId.get(id); }
  get size() { return this.order.length; }

  counts() {
    const c = { pending: 0, confirmed: 0, rejected: 0 };
    for (const t of this.byId.values()) c[t.state] = (c[t.state] || 0) + 1;
    return c;
  }

  // A decision (ours or another analyst's) arrived: update one row.
  apply(row) {
    if (!row) return;
    const isNew = !this.byId.has(row.id);
    this.byId.set(row.id, row);
    if (isNew) { this.order.push(row.id); this.order.sort((a, b) => a - b); this.emit('reset'); }
    else this.emit('update', row);
  }

  invalidateBoxes() { this.windows.clear(); }

  async boxesAt(frame) {
    const start = Math.floor(frame / WINDOW) * WINDOW;
    if (!this.windows.has(start)) {
      const p = api.boxes(this.run, start, start + WINDOW - 1).then((r) => r.frames);
      p.catch(() => this.windows.delete(start));
      this.windows.set(start, p);
    }
    const frames = await this.windows.get(start);
    return frames[frame] || [];
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }
}
