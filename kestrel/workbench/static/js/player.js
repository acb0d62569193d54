// Frame-accurate player: shows picture N (the N-th decoded picture, served by the workbench) in
// the one <img> that carries data-frame="N". data-frame changes only once picture N is on screen.
import { api } from './api.js';

export class Player extends EventTarget {
  constructor(img) {
    super();
    this.img = img;
    this.run = null;
    this.fps = 30;
    this.total = 0; // frames (known count, or a hint while the index is built)
    this.frame = -1; // shown now
    this.want = -1; // requested
    this.playing = false;
    this.speed = 1;
    this._timer = null;
    img.addEventListener('load', () => this._loaded());
    img.addEventListener('error', () => this._failed());
  }

  open(run, info) {
    this.pause();
    this.run = run;
    this.fps = info.fps || 30;
    this.total = info.frames ?? info.frames_hint ?? 0;
    this.frame = -1;
    this.want = -1;
    this.enabled = !!info.video; // no source video: nothing to show (the page says why)
    this.img.hidden = !this.enabled;
    delete this.img.dataset.frame;
  }

  seek(n) {
    if (!this.enabled) return;
    n = Math.max(0, Math.round(n));
    if (this.total) n = Math.min(n, this.total - 1);
    if (n === this.want && this.img.dataset.frame === String(n)) return;
    this.want = n;
    this.img.src = api.frameURL(this.run, n);
  }

  step(d) { this.pause(); this.seek((this.want >= 0 ? this.want : 0) + d); }
  jump(seconds) { this.step(Math.round(seconds * this.fps)); }

  toggle() { if (this.playing) this.pause(); else this.play(); }

  play() {
    if (this.playing) return;
    if (this.total && this.want >= this.total - 1) this.seek(0);
    this.playing = true;
    this._t0 = performance.now();
    this._f0 = Math.max(this.want, 0);
    this.emit('state');
  }

  pause() {
    this.playing = false;
    clearTimeout(this._timer);
    this.emit('state');
  }

  _loaded() {
    const m = /frames\/(\d+)\.jpg/.exec(this.img.src);
    if (!m) return;
    const n = Number(m[1]);
    this.frame = n;
    this.img.dataset.frame = String(n);
    this.emit('frame', n);
    if (this.playing) this._next(n);
  }

  _failed() {
    if (this.playing) this.pause();
    this.emit('missing', this.want);
  }

  _next(n) {
    // Real time when decoding keeps up; otherwise every picture, as fast as they come.
    const due = this._f0 + ((performance.now() - this._t0) / 1000) * this.fps * this.speed;
    const target = Math.max(n + 1, Math.floor(due));
    if (this.total && target >= this.total) { this.pause(); return; }
    const wait = ((target - this._f0) / (this.fps * this.speed)) * 1000 - (performance.now() - this._t0);
    this._timer = setTimeout(() => { if (this.playing) this.seek(target); }, Math.max(0, wait));
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }
}
