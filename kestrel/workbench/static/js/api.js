// The server's JSON API and its event stream; nothing else in the page talks to the network.
const base = (run) => `/api/runs/${run}`;

async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: ${r.status} ${(await r.json().catch(() => ({}))).error || ''}`);
  return r.json();
}

async function postJSON(url, body) {
  const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `${url}: ${r.status}`);
  return data;
}

export const api = {
  config: () => getJSON('/api/config'),
  run: (run) => getJSON(base(run)),
  tracks: (run) => getJSON(`${base(run)}/tracks`),
  track: (run, id) => getJSON(`${base(run)}/tracks/${id}`),
  boxes: (run, from, to) => getJSON(`${base(run)}/boxes?from=${from}&to=${to}`),
  platform: (run) => getJSON(`${base(run)}/platform`),
  trails: (run) => getJSON(`${base(run)}/trails`),
  geo: (run, n) => getJSON(`${base(run)}/geo/${n}`),
  ground: (run, n, u, v) => getJSON(`${base(run)}/ground/${n}?u=${u.toFixed(2)}&v=${v.toFixed(2)}`),
  frameURL: (run, n) => `${base(run)}/frames/${n}.jpg`,
  review: (run, body) => postJSON(`${base(run)}/review`, body),
  undo: (run, body) => postJSON(`${base(run)}/undo`, body),
};

// Server-Sent Events: `review` (anyone's decision), `changed` (a live run grew). Reconnects itself.
export function subscribe(handlers, onState) {
  const es = new EventSource('/api/events');
  es.addEventListener('hello', () => onState(true));
  es.onerror = () => onState(false);
  for (const [name, fn] of Object.entries(handlers)) {
    es.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
  }
  return es;
}
