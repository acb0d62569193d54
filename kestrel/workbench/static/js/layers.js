// Annotation layers over the picture (SVG in image pixels: viewBox = video size): track boxes with
// id and label, and the marker of the last clicked pixel.
const NS = 'http://www.w3.org/2000/svg';

export class BoxLayer {
  constructor(svg, store) {
    this.svg = svg;
    this.store = store;
    this.selected = null;
    this.boxes = [];
    this.mark = null;
  }

  size(w, h) { this.svg.setAttribute('viewBox', `0 0 ${w} ${h}`); }

  draw(boxes) {
    this.boxes = boxes;
    const parts = [];
    for (const [id, x, y, w, h] of boxes) {
      const t = this.store.get(id);
      const state = t ? t.state : 'pending';
      const label = t && t.label !== 'unknown' ? ` ${t.label}` : '';
      const sel = id === this.selected ? ' selected' : '';
      const x0 = x - w / 2, y0 = y - h / 2;
      parts.push(`<g class="box ${state}${sel}" data-box-id="${id}"><rect x="${x0}" y="${y0}" width="${w}" height="${h}"></rect>`
        + `<text x="${x0}" y="${Math.max(y0 - 4, 12)}">#${id}${label}</text></g>`);
    }
    if (this.mark) {
      const [u, v] = this.mark;
      parts.push(`<g class="mark"><circle class="clickmark" cx="${u}" cy="${v}" r="7"></circle>`
        + `<path class="clickmark" d="M${u - 12} ${v}H${u - 4}M${u + 4} ${v}H${u + 12}M${u} ${v - 12}V${v - 4}M${u} ${v + 4}V${v + 12}"></path></g>`);
    }
    this.svg.innerHTML = parts.join('');
  }

  redraw() { this.draw(this.boxes); }
  setMark(uv) { this.mark = uv; this.redraw(); }
}
