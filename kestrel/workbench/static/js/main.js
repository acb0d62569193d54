// Wiring: config -> run -> store, player, layers, timeline, list, map; keyboard; live updates.
import { api, subscribe } from './api.js';
import { TrackStore } from './store.js';
import { Player } from './player.js';
import { BoxLayer } from './layers.js';
import { Timeline } from './timeline.js';
import { TrackList } from './tracklist.js';
import { actionFor, renderHelp } from './keys.js';

const LABELS = ['vehicle', 'person', 'vessel', 'unknown'];
const $ = (id) => document.getElementById(id);

const app = {
  cfg: null, run: 0, info: null, selected: null, undo: [], map: null, geoTimer: null, trails: [],
};
const store = new TrackStore();
const player = new Player($('frame'));
const layer = new BoxLayer($('overlay'), store);
const timeline = new Timeline($('timeline'), store, (n) => { player.pause(); player.seek(n); });
const list = new TrackList($('track-list'), store, (id) => select(id, true));
window.kestrel = { app, store, player }; // for the browser tests and the curious

function hashParams() {
  const out = {};
  for (const part of location.hash.replace(/^#/, '').split('&')) {
    const [k, v] = part.split('=');
    if (k) out[k] = v;
  }
  return out;
}

async function start() {
  renderHelp($('key-help'));
  app.cfg = await api.config();
  $('analyst').textContent = app.cfg.analyst;
  if (app.cfg.push) { $('push').hidden = false; $('push').textContent = `PUSH ${app.cfg.push}`; }
  const sel = $('run-select');
  sel.innerHTML = app.cfg.runs.map((r) => `<option value="${r.id}">${r.name}</option>`).join('');
  sel.addEventListener('change', () => openRun(Number(sel.value), 0));
  const h = hashParams();
  const run = Number(h.run || 0);
  sel.value = String(run);
  subscribe({ review: onReview, changed: onChanged }, (up) => {
    $('conn').textContent = up ? 'connected' : 'offline';
    $('conn').classList.toggle('off', !up);
  });
  await openRun(run, Number(h.frame || 0));
}

async function openRun(run, frame) {
  app.run = run;
  app.selected = null;
  app.undo = JSON.parse(sessionStorage.getItem(`kestrel-undo-${run}`) || '[]'); // survives a reload
  app.info = await api.run(run);
  const info = app.info;
  $('live').hidden = !info.live;
  $('run-info').textContent = `${info.width}×${info.height} · ${info.fps.toFixed(2)} fps · ${info.source || ''}`;
  layer.size(info.width, info.height);
  fitStage();
  player.open(run, info);
  await store.load(run);
  timeline.total = Math.max(info.frames ?? info.frames_hint ?? 1, 1);
  timeline.fps = info.fps;
  $('frame-total').textContent = info.frames ?? `${info.frames_hint}+`;
  timeline.layout();
  counts();
  const vnote = $('video-note');
  vnote.hidden = !!info.video;
  vnote.textContent = info.video ? '' : `No pictures: ${info.video_reason}`;
  if (info.video) player.seek(frame);
  await openMap(info);
}

async function openMap(info) {
  const note = $('map-note');
  if (!info.geo) {
    note.hidden = false;
    note.textContent = `No map for this run: ${info.geo_reason}`;
    $('map').hidden = true;
    return;
  }
  note.hidden = true;
  $('map').hidden = false;
  try {
    if (!app.map) {
      const { MapView } = await import('./map.js');
      app.map = new MapView($('map'), app.cfg.tiles);
    }
    app.map.fitted = false;
    await app.map.setPlatform(await api.platform(app.run));
    app.trails = await api.trails(app.run);
    await app.map.setTrails(app.trails, app.selected);
    if (player.frame >= 0) frameGeo(player.frame);
  } catch (err) {
    note.hidden = false;
    note.textContent = `Map unavailable: ${err.message || err}`;
  }
}

function fitStage() {
  const box = $('stage-box'), st = $('stage');
  const W = app.info?.width || 16, H = app.info?.height || 9;
  const s = Math.min(box.clientWidth / W, box.clientHeight / H);
  st.style.width = `${Math.floor(W * s)}px`;
  st.style.height = `${Math.floor(H * s)}px`;
}
new ResizeObserver(fitStage).observe($('stage-box'));

player.addEventListener('frame', async (ev) => {
  const n = ev.detail;
  $('frame-no').textContent = n;
  $('time').textContent = (n / app.info.fps).toFixed(3);
  history.replaceState(null, '', `#frame=${n}${app.run ? `&run=${app.run}` : ''}`);
  timeline.frame = n;
  timeline.draw();
  const boxes = await store.boxesAt(n);
  if (player.frame === n) layer.draw(boxes);
  scheduleGeo(n);
});
player.addEventListener('state', () => { $('btn-play').innerHTML = player.playing ? '&#10074;&#10074;' : '&#9654;'; });
player.addEventListener('missing', (ev) => { $('frame-no').textContent = `${ev.detail} (none)`; });

function scheduleGeo(n) {
  if (!app.map || !app.info.geo) return;
  clearTimeout(app.geoTimer);
  app.geoTimer = setTimeout(() => frameGeo(n), player.playing ? 200 : 0);
}

async function frameGeo(n) {
  try {
    const g = await api.geo(app.run, n);
    if (player.frame === n || !player.playing) app.map.setFrame(g, api.frameURL(app.run, n));
  } catch (_) { /* frame without a sensor model: keep the last footprint */ }
}

// ---- selection and review -------------------------------------------------------------------
function select(id, seek) {
  if (id == null || !store.get(id)) return;
  app.selected = id;
  list.select(id);
  layer.selected = id;
  layer.redraw();
  timeline.selected = id;
  timeline.draw();
  if (app.map) app.map.select(id);
  const t = store.get(id);
  if (seek && t.first_frame != null) { player.pause(); player.seek(t.first_frame); }
  detail(t);
}

async function detail(t) {
  const el = $('detail');
  const sp = t.speed != null ? `${t.speed.toFixed(1)} m/s` : '–';
  const pos = t.lat != null ? `${t.lat.toFixed(5)}, ${t.lon.toFixed(5)}` : 'not geolocated';
  el.innerHTML = `<h3>Track #${t.id} · <span class="st">${t.state}</span> · ${t.label} / ${t.affiliation}</h3>`
    + `<div>frames ${t.first_frame}–${t.last_frame} · ${sp} · ${pos}</div><div class="hist" id="hist"></div>`;
  try {
    const d = await api.track(app.run, t.id);
    if (app.selected !== t.id) return;
    $('hist').innerHTML = d.history.slice(-4).reverse().map((h) =>
      `${h.at.slice(11, 19)}Z ${h.analyst} ${h.action === 'undo' ? 'undid → ' : ''}${h.state} ${h.label}/${h.affiliation}${h.frame != null ? ` @${h.frame}` : ''}`).join('<br>');
  } catch (_) { /* history is a nicety */ }
}

function move(d) {
  const order = store.order;
  if (!order.length) return;
  const i = order.indexOf(app.selected);
  const j = i < 0 ? (d > 0 ? 0 : order.length - 1) : Math.min(order.length - 1, Math.max(0, i + d));
  select(order[j], true);
}

async function decide(change) {
  const t = store.get(app.selected);
  if (!t) return;
  const body = { track: t.id, state: change.state || t.state, frame: player.frame >= 0 ? player.frame : null,
    label: change.label, affiliation: change.affiliation };
  try {
    const row = await api.review(app.run, body);
    app.undo.push(t.id);
    sessionStorage.setItem(`kestrel-undo-${app.run}`, JSON.stringify(app.undo.slice(-200)));
    onRow(row);
  } catch (err) { flash(err.message); }
}

async function undo() {
  const id = app.undo.pop();
  sessionStorage.setItem(`kestrel-undo-${app.run}`, JSON.stringify(app.undo));
  if (id == null) { flash('nothing to undo'); return; }
  try {
    onRow(await api.undo(app.run, { track: id, frame: player.frame >= 0 ? player.frame : null }));
  } catch (err) { flash(err.message); }
}

function onRow(row) {
  if (!row) return;
  store.apply(row);
  layer.redraw();
  timeline.draw();
  counts();
  if (app.map) app.map.setState(row.id, row.state, app.selected);
  if (row.id === app.selected) detail(row);
}

function onReview(ev) { if (ev.run === app.run) onRow(ev.track); }

async function onChanged(ev) {
  if (ev.run !== app.run) return;
  app.info = await api.run(app.run);
  player.total = app.info.frames ?? app.info.frames_hint ?? player.total;
  store.invalidateBoxes();
  await store.load(app.run);
  if (app.selected != null) list.select(app.selected);
  timeline.total = Math.max(player.total, 1);
  $('frame-total').textContent = app.info.frames ?? `${app.info.frames_hint}+`;
  timeline.layout();
  counts();
  if (app.map) {
    await app.map.setPlatform(await api.platform(app.run));
    app.trails = await api.trails(app.run);
    app.map.setTrails(app.trails, app.selected);
  }
}

function counts() {
  const c = store.counts();
  $('counts').innerHTML = `<span>${store.size} tracks</span><span style="color:var(--pending)">${c.pending} pending</span>`
    + `<span style="color:var(--confirmed)">${c.confirmed} confirmed</span><span style="color:var(--rejected)">${c.rejected} rejected</span>`;
}

function flash(msg) {
  const el = $('detail');
  el.insertAdjacentHTML('beforeend', `<div class="muted">⚠ ${msg}</div>`);
}

// ---- click on the video -> ground -----------------------------------------------------------
$('stage').addEventListener('click', async (ev) => {
  if (!app.info) return;
  const r = $('stage').getBoundingClientRect();
  const u = ((ev.clientX - r.left) / r.width) * app.info.width;
  const v = ((ev.clientY - r.top) / r.height) * app.info.height;
  layer.setMark([u, v]);
  const out = $('ground');
  if (!app.info.geo) { out.textContent = `pixel ${u.toFixed(0)}, ${v.toFixed(0)} (no sensor model)`; return; }
  try {
    const g = await api.ground(app.run, Math.max(player.frame, 0), u, v);
    if (g.miss) { out.textContent = `pixel ${u.toFixed(0)}, ${v.toFixed(0)}: no ground (sky)`; return; }
    out.textContent = `${g.lat.toFixed(6)}, ${g.lon.toFixed(6)}`;
    out.dataset.lat = g.lat; out.dataset.lon = g.lon;
    if (app.map) app.map.setClick(g.lat, g.lon);
  } catch (err) { out.textContent = err.message; }
});

// ---- controls and keys ----------------------------------------------------------------------
$('btn-play').addEventListener('click', () => player.toggle());
$('btn-back').addEventListener('click', () => player.step(-1));
$('btn-fwd').addEventListener('click', () => player.step(1));
$('speed').addEventListener('change', (ev) => { player.speed = Number(ev.target.value); player.pause(); });

const ACTIONS = {
  togglePlay: () => player.toggle(),
  stepBack: () => player.step(-1),
  stepForward: () => player.step(1),
  jumpBack: () => player.jump(-1),
  jumpForward: () => player.jump(1),
  nextTrack: () => move(1),
  prevTrack: () => move(-1),
  confirm: () => decide({ state: 'confirmed' }),
  reject: () => decide({ state: 'rejected' }),
  cycleLabel: () => { const t = store.get(app.selected); if (t) decide({ label: LABELS[(LABELS.indexOf(t.label) + 1) % LABELS.length] }); },
  hostile: () => decide({ affiliation: 'hostile' }),
  friend: () => decide({ affiliation: 'friend' }),
  neutral: () => decide({ affiliation: 'neutral' }),
  unknown: () => decide({ affiliation: 'unknown' }),
  undo: () => undo(),
};

document.addEventListener('keydown', (ev) => {
  if (ev.target.closest && ev.target.closest('select, input, textarea')) return;
  const action = actionFor(ev);
  if (!action) return;
  ev.preventDefault();
  ACTIONS[action]();
});

window.addEventListener('hashchange', () => {
  const h = hashParams();
  if (h.frame != null && Number(h.frame) !== player.frame) { player.pause(); player.seek(Number(h.frame)); }
});

start().catch((err) => { $('detail').textContent = `Cannot open the workbench: ${err.message}`; });
