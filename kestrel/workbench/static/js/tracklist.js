// Track list: one row per track (data-track-id, data-state); the selected row has
// aria-selected="true". Rows are cheap (CSS content-visibility), so 10 000 tracks stay responsive;
// a decision updates one row in place.
const ROW_H = 24; // px, as .row in app.css
const esc = (s) => String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));

export class TrackList {
  constructor(el, store, onPick) {
    this.el = el;
    this.store = store;
    this.rows = new Map();
    this.selected = null;
    el.addEventListener('click', (ev) => {
      const row = ev.target.closest('.row');
      if (row) onPick(Number(row.dataset.trackId));
    });
    store.addEventListener('reset', () => this.render());
    store.addEventListener('update', (ev) => this.update(ev.detail));
  }

  html(t) {
    return `<span>${t.id}</span><span class="st">${t.state}</span><span>${esc(t.label)}</span>`
      + `<span>${esc(t.affiliation)}</span><span>${t.first_frame ?? '–'}–${t.last_frame ?? ''}</span><span class="who">${esc(t.analyst || '')}</span>`;
  }

  render() {
    const frag = document.createDocumentFragment();
    this.rows.clear();
    for (const id of this.store.order) {
      const t = this.store.get(id);
      const row = document.createElement('div');
      row.className = 'row';
      row.setAttribute('role', 'option');
      row.dataset.trackId = String(id);
      row.dataset.state = t.state;
      row.setAttribute('aria-selected', id === this.selected ? 'true' : 'false');
      row.title = `frames ${t.first_frame}–${t.last_frame}`;
      row.innerHTML = this.html(t);
      this.rows.set(id, row);
      frag.appendChild(row);
    }
    this.el.replaceChildren(frag);
  }

  update(t) {
    const row = this.rows.get(t.id);
    if (!row) return;
    row.dataset.state = t.state;
    row.innerHTML = this.html(t);
  }

  select(id) {
    const old = this.rows.get(this.selected);
    if (old) old.setAttribute('aria-selected', 'false');
    this.selected = id;
    const row = this.rows.get(id);
    if (row) {
      row.setAttribute('aria-selected', 'true');
      // Rows have a fixed height: scroll by arithmetic, not scrollIntoView (a layout of every row).
      const i = this.store.order.indexOf(id), h = ROW_H, el = this.el;
      if (i * h < el.scrollTop) el.scrollTop = i * h;
      else if ((i + 1) * h > el.scrollTop + el.clientHeight) el.scrollTop = (i + 1) * h - el.clientHeight;
    }
  }
}
