// Timeline: one bar per track from its first to its last frame (lanes packed greedily), coloured
// by state; the playhead; click to seek.
const COLORS = { pending: '#f2b134', confirmed: '#2fd180', rejected: '#5d6672' };

export class Timeline {
  constructor(canvas, store, onSeek) {
    this.c = canvas;
    this.store = store;
    this.total = 1;
    this.frame = 0;
    this.selected = null;
    this.lanes = new Map();
    canvas.addEventListener('click', (ev) => {
      const r = canvas.getBoundingClientRect();
      onSeek(Math.floor(((ev.clientX - r.left) / r.width) * this.total));
    });
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  layout() {
    const tracks = this.store.order.map((id) => this.store.get(id)).filter((t) => t.first_frame != null);
    tracks.sort((a, b) => a.first_frame - b.first_frame);
    const ends = [];
    this.lanes.clear();
    for (const t of tracks) {
      let lane = ends.findIndex((e) => e < t.first_frame);
      if (lane < 0) { lane = ends.length; ends.push(0); }
      ends[lane] = t.last_frame + 2;
      this.lanes.set(t.id, lane);
    }
    this.nLanes = Math.max(ends.length, 1);
    this.draw();
  }

  draw() {
    const c = this.c, dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (!w) return;
    c.width = w * dpr; c.height = h * dpr;
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = '#1c232c'; g.fillRect(0, 0, w, h);
    const x = (f) => (f / this.total) * w;
    const laneH = Math.max(1.5, Math.min(8, (h - 16) / this.nLanes));
    for (const [id, lane] of this.lanes) {
      const t = this.store.get(id);
      g.fillStyle = COLORS[t.state] || COLORS.pending;
      const y = 4 + lane * laneH;
      g.fillRect(x(t.first_frame), y, Math.max(1.5, x(t.last_frame + 1) - x(t.first_frame)), laneH - (laneH > 3 ? 1 : 0));
      if (id === this.selected) { g.strokeStyle = '#fff'; g.lineWidth = 1.5; g.strokeRect(x(t.first_frame), y, Math.max(2, x(t.last_frame + 1) - x(t.first_frame)), laneH - 1); }
    }
    // seconds ticks
    g.fillStyle = '#7d8a99'; g.font = '10px system-ui, sans-serif';
    const fps = this.fps || 30, step = Math.max(1, Math.ceil(this.total / fps / 12));
    for (let s = 0; s * fps < this.total; s += step) { g.fillRect(x(s * fps), h - 10, 1, 10); g.fillText(`${s}s`, x(s * fps) + 3, h - 2); }
    g.fillStyle = '#3fa7ff';
    g.fillRect(x(this.frame) - 1, 0, 2, h);
  }
}
