// Komoku's web page: the keys with their live values, and charts of their
// history. The view lives in the URL's fragment, so a link reproduces it:
//   #/                                     the keys
//   #/chart?key=K[&key=K2…]&from=-24h&to=now    one or several keys' history
// Everything comes from /api/v1 on this origin (docs/web.md).

import * as api from './api.js';
import {drawChart, formatNumber, plotColumns} from './chart.js';

const $ = (sel, root = document) => root.querySelector(sel);

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const now = () => Date.now() / 1000;

// "3 s ago", "5 min ago", "2 h ago", "4 d ago".
function ago(t) {
  if (t === null || t === undefined) return '–';
  const s = Math.max(0, now() - t);
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// "45 s", "12 min 5 s", "3 h 20 min", "2 d 4 h".
function duration(s) {
  if (s === null || s === undefined) return '–';
  if (s < 60) return `${formatNumber(Math.round(s * 10) / 10)} s`;
  const units = [[86400, 'd'], [3600, 'h'], [60, 'min'], [1, 's']];
  const i = units.findIndex(([u]) => s >= u);
  const [u1, n1] = units[i];
  const [u2, n2] = units[i + 1];
  const a = Math.floor(s / u1);
  const b = Math.floor((s - a * u1) / u2);
  return b ? `${a} ${n1} ${b} ${n2}` : `${a} ${n1}`;
}

function localTime(t) {
  return new Date(t * 1000).toLocaleString();
}

function showValue(v, unit) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'number') return formatNumber(v) + (unit ? ' ' + unit : '');
  return String(v);
}

// ---- The token ------------------------------------------------------------

let onTokenGiven = () => {};

function askToken(message) {
  const dialog = $('#auth');
  $('#auth-message').textContent = message;
  dialog.hidden = false;
  $('#auth-token').focus();
}

api.onAuthNeeded(askToken);

$('#auth-form').addEventListener('submit', (e) => {
  e.preventDefault();
  api.setToken($('#auth-token').value.trim());
  $('#auth-token').value = '';
  $('#auth').hidden = true;
  onTokenGiven();
});

$('#auth-forget').addEventListener('click', () => {
  api.setToken('');
  location.reload();
});

function showError(message) {
  const bar = $('#error');
  bar.textContent = message;
  bar.hidden = !message;
}

// ---- Routing ----------------------------------------------------------------

let current = null;  // the view on screen: {stop()}

function route() {
  if (current) current.stop();
  showError('');
  const hash = location.hash || '#/';
  const [path, query] = hash.slice(1).split('?');
  const params = new URLSearchParams(query || '');
  const main = $('#main');
  main.textContent = '';
  if (path === '/chart' && params.getAll('key').length) {
    current = chartView(main, params);
  } else {
    current = keysView(main);
  }
  onTokenGiven = () => route();
}

window.addEventListener('hashchange', route);

// ---- The keys ---------------------------------------------------------------

function keysView(main) {
  const abort = new AbortController();
  const keys = new Map();  // name -> {key, type, opts, value, time, row}
  let units = new Map();
  const selected = new Set();

  const filter = h('input', {
    type: 'search', id: 'filter', placeholder: 'Filter keys', autocomplete: 'off',
    oninput: () => render(),
  });
  const status = h('span', {class: 'live', id: 'live'}, 'connecting…');
  const chartSelected = h('button', {
    id: 'chart-selected', disabled: true,
    onclick: () => {
      const p = new URLSearchParams();
      for (const k of selected) p.append('key', k);
      p.set('from', '-24h');
      p.set('to', 'now');
      location.hash = '#/chart?' + p.toString();
    },
  }, 'Chart selected');
  const tbody = h('tbody');
  const table = h('table', {class: 'keys', id: 'keys'},
      h('thead', {}, h('tr', {},
          h('th', {class: 'pick'}), h('th', {}, 'Key'), h('th', {}, 'Type'),
          h('th', {class: 'num'}, 'Value'), h('th', {}, 'Changed'))),
      tbody);
  const empty = h('p', {class: 'empty', hidden: true},
      'No keys yet. Publish one: mosquitto_pub -t komoku/set/kitchen/temperature -m 21.5');
  main.append(h('div', {class: 'toolbar'}, filter, chartSelected, status), table, empty);

  function stale(k) {
    if (k.time === null || k.time === undefined) return false;
    const after = k.opts && k.opts.stale_after;
    return !!after && now() - k.time >= after;
  }

  function fillRow(k) {
    const row = k.row;
    const value = row.querySelector('.value');
    value.textContent = showValue(k.value, units.get(k.key));
    value.title = k.time ? localTime(k.time) : 'no value yet';
    row.querySelector('.type').textContent = k.type || '';
    const changed = row.querySelector('.changed');
    changed.textContent = ago(k.time);
    const unknown = k.value === null || k.value === undefined;
    row.classList.toggle('unknown', unknown);
    row.classList.toggle('stale', stale(k));
    const badge = row.querySelector('.badge');
    badge.textContent = unknown ? 'unknown' : stale(k) ? 'stale' : '';
  }

  function makeRow(k) {
    const slash = k.key.lastIndexOf('/');
    const leaf = slash >= 0 ? k.key.slice(slash + 1) : k.key;
    const link = '#/chart?' + new URLSearchParams({key: k.key, from: '-24h', to: 'now'});
    const box = h('input', {
      type: 'checkbox', 'aria-label': 'select ' + k.key, checked: selected.has(k.key),
      onchange: (e) => {
        if (e.target.checked) selected.add(k.key);
        else selected.delete(k.key);
        chartSelected.disabled = selected.size === 0;
      },
    });
    k.row = h('tr', {class: 'key', 'data-key': k.key},
        h('td', {class: 'pick'}, box),
        h('td', {class: 'name'}, h('a', {href: link, title: k.key}, leaf), h('span', {class: 'badge'})),
        h('td', {class: 'type'}),
        h('td', {class: 'value num'}),
        h('td', {class: 'changed'}));
    fillRow(k);
  }

  // Rows sorted by name under a heading per folder (the part before the
  // last '/'), filtered by the box's words (all must occur).
  function render() {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    // Top-level keys first, then each folder's keys together.
    const folderOf = (n) => n.slice(0, n.lastIndexOf('/') + 1);
    const names = [...keys.keys()].sort((a, b) => {
      const fa = folderOf(a);
      const fb = folderOf(b);
      if (fa !== fb) return fa < fb ? -1 : 1;
      return a < b ? -1 : a > b ? 1 : 0;
    });
    const rows = [];
    let folder = null;
    for (const name of names) {
      const lower = name.toLowerCase();
      if (!words.every((w) => lower.includes(w))) continue;
      const k = keys.get(name);
      if (!k.row) makeRow(k);
      const slash = name.lastIndexOf('/');
      const f = slash >= 0 ? name.slice(0, slash + 1) : '';
      if (f !== folder) {
        folder = f;
        if (f) rows.push(h('tr', {class: 'folder'}, h('th', {colspan: 5}, f)));
      }
      rows.push(k.row);
    }
    tbody.replaceChildren(...rows);
    empty.hidden = keys.size > 0;
  }

  function merge(k) {
    const old = keys.get(k.key);
    if (old) {
      // The newest time wins, whichever arrives first (list or stream).
      if (k.time !== undefined && k.time !== null && (old.time === null || old.time === undefined || k.time >= old.time)) {
        old.value = k.value;
        old.time = k.time;
      }
      if (k.type) old.type = k.type;
      if (k.opts) old.opts = k.opts;
      if (old.row) fillRow(old);
      return false;
    }
    keys.set(k.key, {value: null, time: null, ...k});
    return true;
  }

  async function load() {
    try {
      const [list, discovery] = await Promise.all([
        api.komoku({keys: {values: true}}),
        api.get('discovery').catch(() => null),
      ]);
      units = new Map();
      for (const e of (discovery && discovery.entities) || []) {
        const unit = e.unit_of_measurement || e.unit;
        if (e.key && unit) units.set(e.key, unit);
      }
      const seen = new Set();
      for (const k of list) {
        seen.add(k.key);
        merge(k);
      }
      for (const name of [...keys.keys()]) if (!seen.has(name)) keys.delete(name);
      for (const k of keys.values()) if (k.row) fillRow(k);
      render();
      main.dataset.loaded = 'true';
    } catch (e) {
      if (e.status !== 401) showError('Cannot read the keys: ' + e.message);
    }
  }

  // A key the list did not have: shown at once with what its change says,
  // then the list is read again (once for a burst of new keys) for its
  // type, its options (stale_after, so it is marked stale without a reload)
  // and its unit, which a change does not carry.
  let relist = null;
  function added(data) {
    if (merge({key: data.key, value: data.value, time: data.time})) render();
    if (!relist) relist = setTimeout(() => { relist = null; load(); }, 300);
  }

  // The stream first, then the list: a change between the two is in both,
  // and merging by time makes that harmless. After a reconnection the list
  // is read again, so a change made while the stream was down is not lost.
  api.stream(['#'], {
    open: () => {
      status.textContent = 'live';
      status.classList.add('on');
      load();
    },
    error: () => {
      status.textContent = 'reconnecting…';
      status.classList.remove('on');
    },
    event: (name, data) => {
      if (name === 'change') {
        if (!data.current) return;
        if (!keys.has(data.key)) {
          added(data);
          return;
        }
        merge({key: data.key, value: data.value, time: data.time});
        const row = keys.get(data.key).row;
        if (row) {
          row.classList.remove('flash');
          void row.offsetWidth;
          row.classList.add('flash');
        }
      } else if (name === 'delete') {
        keys.delete(data.key);
        selected.delete(data.key);
        render();
      }
    },
  }, abort.signal);

  const timer = setInterval(() => {
    for (const k of keys.values()) if (k.row) fillRow(k);
  }, 5000);
  document.title = 'Komoku';
  filter.focus();
  return {stop: () => { abort.abort(); clearInterval(timer); clearTimeout(relist); }};
}

// ---- The chart -------------------------------------------------------------

const RANGES = [['1h', '-1h'], ['24h', '-24h'], ['7d', '-7d'], ['30d', '-30d'], ['1y', '-365d']];
const RAW_POINTS = 1500;  // at most this many changes: draw them, not buckets
const MAX_STATES = 12;    // a string key with more values is shown as a log
// The steps (seconds) a long range of states is bucketed in: the shortest
// giving at most a bucket per pixel column. Multiples of 5 min and of an
// hour let cold history answer from its rollups.
const BUCKET_STEPS = [
  1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
  86400, 7 * 86400,
];

// Epoch seconds for a URL time: a number, `now`, or `-24h`-style offsets.
function resolveTime(text, base) {
  if (text === 'now') return base;
  const m = /^([+-])(\d+(?:\.\d+)?)([smhdw])$/.exec(text);
  if (m) {
    const unit = {s: 1, m: 60, h: 3600, d: 86400, w: 604800}[m[3]];
    return base + (m[1] === '-' ? -1 : 1) * Number(m[2]) * unit;
  }
  const n = Number(text);
  if (Number.isFinite(n)) return n;
  const d = Date.parse(text);
  return Number.isFinite(d) ? d / 1000 : null;
}

function chartView(main, params) {
  const abort = new AbortController();
  const names = params.getAll('key');
  const fromText = params.get('from') || '-24h';
  const toText = params.get('to') || 'now';
  const live = toText === 'now';
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
  let info = new Map();   // name -> {type, opts}
  let loading = null;
  let pending = false;

  const setView = (p) => {
    const q = new URLSearchParams();
    for (const k of names) q.append('key', k);
    q.set('from', p.from);
    q.set('to', p.to);
    location.hash = '#/chart?' + q.toString();
  };

  const rangeButtons = RANGES.map(([label, from]) => h('button', {
    class: fromText === from && live ? 'on' : '', 'data-range': label,
    onclick: () => setView({from, to: 'now'}),
  }, label));
  const toLocal = (t) => {
    const d = new Date(t * 1000 - new Date(t * 1000).getTimezoneOffset() * 60000);
    return d.toISOString().slice(0, 16);
  };
  const fromInput = h('input', {type: 'datetime-local', 'aria-label': 'from'});
  const toInput = h('input', {type: 'datetime-local', 'aria-label': 'to'});
  const custom = h('form', {class: 'custom', onsubmit: (e) => {
    e.preventDefault();
    const a = Date.parse(fromInput.value) / 1000;
    const b = Date.parse(toInput.value) / 1000;
    if (Number.isFinite(a) && Number.isFinite(b) && b > a) setView({from: a, to: b});
    else showError('Custom range: give a start before the end.');
  }}, fromInput, '–', toInput, h('button', {type: 'submit'}, 'Show'));
  const title = h('h1', {class: 'title'}, names.join(', '));
  const chartBox = h('div', {class: 'chart-box', id: 'chart'});
  const side = h('aside', {class: 'stats', id: 'stats'});
  const note = h('p', {class: 'note', id: 'note'});
  const extra = h('div', {class: 'extra', id: 'extra'});
  main.append(
      h('div', {class: 'toolbar'}, h('a', {href: '#/', class: 'back'}, '← Keys'), title),
      h('div', {class: 'toolbar ranges'}, ...rangeButtons, custom),
      h('div', {class: 'view'}, h('div', {class: 'left'}, chartBox, note, extra), side));
  document.title = names.join(', ') + ' – Komoku';

  async function keyInfo() {
    const out = new Map();
    for (const k of await api.komoku({keys: {values: false}})) {
      if (names.includes(k.key)) out.set(k.key, k);
    }
    return out;
  }

  async function load() {
    if (loading) {
      pending = true;
      return;
    }
    const base = now();
    const from = resolveTime(fromText, base);
    const to = resolveTime(toText, base);
    if (from === null || to === null || !(to > from)) {
      showError(`The range ${fromText} – ${toText} is not a range (from must be before to).`);
      return;
    }
    fromInput.value = toLocal(from);
    toInput.value = toLocal(to);
    loading = (async () => {
      try {
        if (!info.size) info = await keyInfo();
        const missing = names.filter((n) => !info.has(n));
        if (missing.length) {
          showError('No such key: ' + missing.join(', '));
          return;
        }
        const results = await Promise.all(names.map((n) => fetchKey(n, info.get(n), from, to)));
        render(results, from, to);
        showError('');
        main.dataset.loaded = 'true';
      } catch (e) {
        if (e.status !== 401) showError('Cannot read the history: ' + e.message);
      }
    })();
    await loading;
    loading = null;
    if (pending) {
      pending = false;
      load();
    }
  }

  // What one key's chart needs, per its type.
  async function fetchKey(name, k, from, to) {
    const type = k.type;
    const common = {key: name, from, to};
    if (type === 'numeric' || type === 'counter') {
      const stats = await api.get('stats', common);
      const out = {name, type, stats, opts: k.opts || {}};
      if (stats.count <= RAW_POINTS) {
        const [raw, at] = await Promise.all([
          api.get('history', common),
          api.get('at', {key: name, time: from}),
        ]);
        out.raw = raw.rows;
        if (at.known) out.raw.unshift([from, at.value]);
      }
      if (type === 'counter' || !out.raw) {
        const aggs = type === 'counter' ? 'increase,first,min,last' : 'twavg,min,max';
        out.buckets = await api.get('history', {...common, step: 'auto', agg: aggs});
      }
      return out;
    }
    // boolean, uptime, string: the states and how long each held.
    const stats = await api.get('stats', {...common, distribution: 'hour_of_day', tz});
    const values = Object.keys(stats.time).filter((v) => v !== 'unknown');
    const out = {name, type, stats, values};
    const allowed = k.opts && k.opts.values;
    if (type === 'string' && !allowed && values.length > MAX_STATES) {
      try {
        out.log = (await api.get('history', {...common, limit: 1000})).rows;
      } catch (e) {
        if (e.code !== 'too_many_points') throw e;
        out.logNote = 'More than 1,000 lines in this range: zoom in to read them.';
      }
      return out;
    }
    // More spans (about one per change) than the chart has pixel columns:
    // the time in each state per bucket of about a pixel instead, from the
    // server (history agg=states), whatever the number of changes.
    const columns = plotColumns(chartBox.clientWidth || chartBox.parentElement.clientWidth);
    if (stats.changes + 1 > columns) {
      const step = BUCKET_STEPS.find((s) => (to - from) / s <= columns) || BUCKET_STEPS.at(-1);
      const b = await api.get('history', {...common, step: step + 's', agg: 'states', tz});
      out.step = b.step;
      out.buckets = b.rows.map((row, i) => {
        const parts = {};
        b.states.forEach((v, j) => {
          if (row[3 + j] > 0) parts[v] = row[3 + j];
        });
        return [row[0], i + 1 < b.rows.length ? b.rows[i + 1][0] : b.to, parts];
      });
      return out;
    }
    const spans = [];
    await Promise.all(values.map(async (value) => {
      const r = await api.get('timespans', {...common, value});
      for (const [start, seconds] of r.spans) spans.push([start, start + seconds, value]);
    }));
    spans.sort((a, b) => a[0] - b[0]);
    out.spans = spans;
    return out;
  }

  function stateClass(type, values) {
    return (v) => {
      if (type !== 'string') return v === 'true' ? 'st-true' : 'st-false';
      const i = values.indexOf(v);
      return 'st' + (i % MAX_STATES);
    };
  }

  function render(results, from, to) {
    const spec = {from, to, lines: [], bars: [], lanes: [], labelLanes: names.length > 1};
    const notes = [];
    side.textContent = '';
    extra.textContent = '';
    results.forEach((r, i) => {
      const cls = 's' + (i % 8);
      const label = names.length > 1 ? h('h2', {class: 'legend ' + cls}, h('span', {class: 'swatch'}), r.name) : null;
      if (r.type === 'numeric') {
        if (r.raw) {
          spec.lines.push({name: r.name, cls, points: r.raw, step: true, dots: r.raw.length <= 300, until: Math.min(to, now())});
          notes.push(`${r.name}: ${r.stats.count} changes, each drawn`);
        } else {
          const b = r.buckets;
          const half = b.step / 2;
          spec.lines.push({
            name: r.name, cls,
            points: b.rows.map((row) => [row[0] + half, row[1]]),
            band: b.rows.map((row) => [row[0] + half, row[2], row[3]]),
          });
          notes.push(`${r.name}: time-weighted mean per ${duration(b.step)}, band from min to max`);
        }
        side.append(label || '', statsTable([
          ['min', formatNumber(r.stats.min)], ['max', formatNumber(r.stats.max)],
          ['mean', formatNumber(r.stats.mean)], ['time-weighted mean', formatNumber(r.stats.twavg)],
          ['changes', r.stats.count], ['known', duration(r.stats.known)],
        ]));
      } else if (r.type === 'counter') {
        const b = r.buckets;
        const tol = r.opts.reset_tolerance || 0;
        const resets = [];
        let last = null;
        let total = 0;
        for (const [t, inc, first, min, lastv] of b.rows) {
          if (inc !== null) total += inc;
          if (first !== null && ((last !== null && first < last - tol) || (min !== null && min < first - tol))) resets.push(t);
          if (lastv !== null) last = lastv;
        }
        spec.bars.push({name: r.name, cls, width: b.step, points: b.rows.map((row) => [row[0], row[1]]), resets});
        notes.push(`${r.name}: increase per ${duration(b.step)}` + (resets.length ? `; ▼ marks ${resets.length} reset(s)` : ''));
        side.append(label || '', statsTable([
          ['increase', formatNumber(total)], ['min', formatNumber(r.stats.min)],
          ['max', formatNumber(r.stats.max)], ['changes', r.stats.count],
          ['known', duration(r.stats.known)],
        ]));
      } else if (r.log || r.logNote) {
        side.append(label || '', statsTable([
          ['changes', r.stats.changes], ['values', r.values.length],
          ['unknown', duration(r.stats.time.unknown)],
        ]));
        extra.append(h('h2', {}, r.name + ': log'), r.logNote ? h('p', {}, r.logNote) :
          h('table', {class: 'log'}, h('tbody', {}, r.log.slice().reverse().map(([t, v]) =>
            h('tr', {}, h('td', {class: 'when'}, localTime(t)), h('td', {}, String(v)))))));
      } else {
        const order = r.type === 'string' ? r.values : ['true', 'false'];
        const cls2 = stateClass(r.type, order);
        spec.lanes.push(r.buckets ? {name: r.name, buckets: r.buckets, step: r.step, cls: cls2} :
          {name: r.name, spans: r.spans, cls: cls2});
        const rows = order.map((v) => [
          h('span', {}, h('span', {class: 'swatch ' + cls2(v)}), v),
          `${duration(r.stats.time[v])} (${formatNumber(100 * (r.stats.share[v] || 0))} %)`,
        ]);
        rows.push(['unknown', duration(r.stats.time.unknown)]);
        rows.push(['changes', r.stats.changes]);
        side.append(label || '', statsTable(rows, 'states'));
        if (r.stats.hour_of_day) side.append(hourOfDay(r, order, cls2));
      }
    });
    const drawn = spec.lines.length || spec.bars.length || spec.lanes.length;
    note.textContent = notes.join(' · ') + (notes.length ? '. ' : '') +
        (drawn ? 'Drag across the chart to zoom in.' : '');
    chartBox.hidden = !drawn;
    if (drawn) {
      drawChart(chartBox, spec, {onZoom: (a, b) => setView({from: a.toFixed(3), to: b.toFixed(3)})});
    } else {
      chartBox.textContent = '';
    }
    // When the view was last drawn, for bench/page_bench (docs/web.md,
    // "Speed"); only the last mark is kept, so a live chart does not pile
    // them up.
    performance.clearMarks('komoku:drawn');
    performance.mark('komoku:drawn');
  }

  function statsTable(rows, cls = '') {
    return h('table', {class: 'stat-table ' + cls}, h('tbody', {},
        rows.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v)))));
  }

  // The share of each state per local hour of the day, as stacked columns.
  function hourOfDay(r, order, cls) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    const w = 24 * 10;
    const ht = 60;
    svg.setAttribute('viewBox', `0 0 ${w} ${ht + 14}`);
    svg.setAttribute('class', 'hours');
    for (const {hour, share} of r.stats.hour_of_day) {
      let y = ht;
      for (const v of order) {
        const s = share[v] || 0;
        if (!s) continue;
        const rect = document.createElementNS(ns, 'rect');
        rect.setAttribute('x', hour * 10 + 1);
        rect.setAttribute('width', 8);
        rect.setAttribute('y', y - s * ht);
        rect.setAttribute('height', s * ht);
        rect.setAttribute('class', 'state ' + cls(v));
        const tip = document.createElementNS(ns, 'title');
        tip.textContent = `${hour}:00 ${v} ${formatNumber(100 * s)} %`;
        rect.append(tip);
        svg.append(rect);
        y -= s * ht;
      }
      if (hour % 6 === 0) {
        const t = document.createElementNS(ns, 'text');
        t.setAttribute('x', hour * 10);
        t.setAttribute('y', ht + 12);
        t.textContent = String(hour);
        svg.append(t);
      }
    }
    return h('figure', {class: 'hour-of-day'}, h('figcaption', {}, 'share per hour of the day'), svg);
  }

  // New changes redraw the view while it ends now. Each time the stream
  // opens (the first time too) the range is read again, so a change made
  // before the stream listened (between the first read and the stream's
  // start, or while it was reconnecting) is drawn too.
  if (live) {
    let timer = null;
    const soon = () => {
      if (!timer) timer = setTimeout(() => { timer = null; load(); }, 500);
    };
    api.stream(names, {
      open: () => soon(),
      event: (name, data) => {
        if (name === 'delete') { info = new Map(); soon(); }
        if (name === 'change' && names.includes(data.key)) soon();
      },
    }, abort.signal);
  }
  const onResize = () => { if (main.dataset.loaded) load(); };
  let resizeTimer = null;
  const resized = () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(onResize, 200); };
  window.addEventListener('resize', resized);
  load();
  return {stop: () => { abort.abort(); window.removeEventListener('resize', resized); }};
}

route();
