// Map beside the video (MapLibre GL JS, vendored): platform path, the current footprint with the
// current picture draped on its corners, track trails by state, the clicked ground point.
// The style is inline: no glyphs, sprites or remote sources; a basemap only when configured.
import * as maplibregl from '/static/vendor/maplibre-gl/maplibre-gl.mjs';

const EMPTY = { type: 'FeatureCollection', features: [] };
const STATE_COLOR = ['match', ['get', 'state'], 'confirmed', '#2fd180', 'rejected', '#6b7480', '#f2b134'];

function style(tiles) {
  const s = {
    version: 8,
    sources: {},
    layers: [{ id: 'bg', type: 'background', paint: { 'background-color': '#10161d' } }],
  };
  if (tiles) {
    s.sources.basemap = { type: 'raster', tiles: [tiles], tileSize: 256 };
    s.layers.push({ id: 'basemap', type: 'raster', source: 'basemap' });
  }
  return s;
}

export class MapView {
  constructor(el, tiles) {
    this.el = el;
    this.map = new maplibregl.Map({ container: el, style: style(tiles), center: [0, 0], zoom: 1,
      attributionControl: false, fadeDuration: 0, renderWorldCopies: false });
    this.map.addControl(new maplibregl.NavigationControl({ showCompass: true }), 'top-right');
    this.map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-left');
    this.ready = new Promise((res) => this.map.on('load', res));
    this.ready.then(() => this._layers());
    this.imageURL = null;
    this.fitted = false;
  }

  _layers() {
    const m = this.map;
    for (const id of ['grid', 'path', 'footprints', 'footprint', 'trails', 'heads', 'platform', 'click']) {
      m.addSource(id, { type: 'geojson', data: EMPTY });
    }
    m.addSource('frame', { type: 'image', url: 'data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7',
      coordinates: [[0, 0.0001], [0.0001, 0.0001], [0.0001, 0], [0, 0]] });
    m.addLayer({ id: 'grid', type: 'line', source: 'grid', paint: { 'line-color': '#1f2933', 'line-width': 1 } });
    m.addLayer({ id: 'footprints', type: 'line', source: 'footprints', paint: { 'line-color': '#3fa7ff', 'line-opacity': 0.18, 'line-width': 1 } });
    m.addLayer({ id: 'frame', type: 'raster', source: 'frame', paint: { 'raster-opacity': 0.85, 'raster-fade-duration': 0 } });
    m.addLayer({ id: 'footprint', type: 'line', source: 'footprint', paint: { 'line-color': '#3fa7ff', 'line-width': 2 } });
    m.addLayer({ id: 'path', type: 'line', source: 'path', paint: { 'line-color': '#c7d2de', 'line-width': 1.5, 'line-dasharray': [2, 2] } });
    m.addLayer({ id: 'trails', type: 'line', source: 'trails', paint: { 'line-color': STATE_COLOR, 'line-width': 2.5 } });
    m.addLayer({ id: 'heads', type: 'circle', source: 'heads', paint: { 'circle-radius': 4,
      'circle-color': STATE_COLOR, 'circle-stroke-color': '#000', 'circle-stroke-width': 1 } });
    // The selected track: same data, a filter (cheap to change: no data re-upload with 10 000 tracks).
    m.addLayer({ id: 'trail-sel', type: 'line', source: 'trails', filter: ['==', ['get', 'id'], -1],
      paint: { 'line-color': '#ffffff', 'line-width': 4.5 } });
    m.addLayer({ id: 'head-sel', type: 'circle', source: 'heads', filter: ['==', ['get', 'id'], -1],
      paint: { 'circle-radius': 7, 'circle-color': STATE_COLOR, 'circle-stroke-color': '#fff', 'circle-stroke-width': 2 } });
    m.addLayer({ id: 'platform', type: 'circle', source: 'platform', paint: { 'circle-radius': 6, 'circle-color': '#ffffff',
      'circle-stroke-color': '#3fa7ff', 'circle-stroke-width': 2 } });
    m.addLayer({ id: 'click', type: 'circle', source: 'click', paint: { 'circle-radius': 7, 'circle-color': 'rgba(0,0,0,0)',
      'circle-stroke-color': '#3fa7ff', 'circle-stroke-width': 3 } });
  }

  async setPlatform(p) {
    await this.ready;
    const path = p.path.map((r) => [r[2], r[1]]);
    this.map.getSource('path').setData({ type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: path } });
    this.map.getSource('footprints').setData({ type: 'FeatureCollection', features: p.footprints.map(([, fp]) => ring(fp)) });
    if (!this.fitted) {
      // Fit what the camera saw (the platform's orbit may be far wider); the path if no footprint.
      const seen = p.footprints.flatMap(([, fp]) => fp.map(([la, lo]) => [lo, la]));
      const pts = seen.length ? seen : path;
      if (pts.length) {
        const b = pts.reduce((bb, c) => bb.extend(c), new maplibregl.LngLatBounds(pts[0], pts[0]));
        this.map.fitBounds(b, { padding: 30, duration: 0 });
        this.fitted = true;
      }
    }
  }

  async select(id) {
    await this.ready;
    const f = ['==', ['get', 'id'], id ?? -1];
    this.map.setFilter('trail-sel', f);
    this.map.setFilter('head-sel', f);
  }

  async setTrails(trails, selected) {
    await this.ready;
    this.trails = trails;
    const feats = [], heads = [];
    for (const t of trails) {
      const props = { id: t.id, state: t.state };
      const coords = t.path.map((p) => [p[0], p[1]]);
      if (coords.length >= 2) feats.push({ type: 'Feature', properties: props, geometry: { type: 'LineString', coordinates: coords } });
      if (coords.length) heads.push({ type: 'Feature', properties: props, geometry: { type: 'Point', coordinates: coords[coords.length - 1] } });
    }
    this.map.getSource('trails').setData({ type: 'FeatureCollection', features: feats });
    this.map.getSource('heads').setData({ type: 'FeatureCollection', features: heads });
    this.select(selected);
  }

  setState(id, state, selected) {
    if (!this.trails) return;
    for (const t of this.trails) if (t.id === id) t.state = state;
    this.setTrails(this.trails, selected);
  }

  // The current frame: footprint outline, the picture draped on its corners, the platform.
  async setFrame(geo, pictureURL) {
    await this.ready;
    if (!geo || !geo.footprint) return;
    const corners = geo.footprint.map(([la, lo]) => [lo, la]); // UL, UR, LR, LL
    this.map.getSource('footprint').setData(ring(geo.footprint));
    this.map.getSource('frame').updateImage({ url: pictureURL, coordinates: corners });
    this.imageURL = pictureURL;
    this.map.getSource('platform').setData(geo.platform
      ? { type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: [geo.platform[1], geo.platform[0]] } } : EMPTY);
  }

  async setClick(lat, lon) {
    await this.ready;
    this.map.getSource('click').setData(lat == null ? EMPTY
      : { type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: [lon, lat] } });
  }
}

function ring(fp) {
  const c = fp.map(([la, lo]) => [lo, la]);
  return { type: 'Feature', properties: {}, geometry: { type: 'Polygon', coordinates: [[...c, c[0]]] } };
}
