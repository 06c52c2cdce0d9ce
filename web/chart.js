// A small time-series chart drawn as SVG: lines with min-max bands, bars,
// and state lanes, on one time axis; drag across it to zoom. No library: a
// chart of a few thousand points is a few SVG paths.
//
// drawChart(host, spec, {onZoom}) replaces host's content. spec:
//   from, to            the time range, epoch seconds
//   lines: [{name, cls, points: [[t, v|null]], band: [[t, lo, hi]], step, dots}]
//     step: the value holds until the next point (raw changes), drawn as steps
//   bars:  [{name, cls, width, points: [[t, v|null]], resets: [t]}]
//   lanes: [{name, spans: [[t0, t1, value]], cls(value)}], named when labelLanes;
//     for a long range, buckets: [[t0, t1, {value: seconds}]] and their step
//     (history agg=states) in place of spans
// Times are epoch seconds; null values break a line.

const NS = 'http://www.w3.org/2000/svg';

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

const SECOND = 1;
const MINUTE = 60;
const HOUR = 3600;
const DAY = 86400;
const TIME_STEPS = [
  SECOND, 2, 5, 10, 15, 30, MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE,
  30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY,
  14 * DAY, 30 * DAY, 91 * DAY, 365 * DAY,
];

// Tick times across [from, to]: about `count` of them, on local round times.
export function timeTicks(from, to, count) {
  const span = to - from;
  const step = TIME_STEPS.find((s) => span / s <= count) || 365 * DAY;
  const ticks = [];
  if (step >= 30 * DAY) {
    // Months (or quarters, years): the first of the month, local time.
    const months = step >= 365 * DAY ? 12 : step >= 91 * DAY ? 3 : 1;
    const d = new Date(from * 1000);
    d.setDate(1);
    d.setHours(0, 0, 0, 0);
    d.setMonth(Math.floor(d.getMonth() / months) * months);
    while (d.getTime() / 1000 <= to) {
      if (d.getTime() / 1000 >= from) ticks.push(d.getTime() / 1000);
      d.setMonth(d.getMonth() + months);
    }
    return {step, ticks};
  }
  if (step >= DAY) {
    const d = new Date(from * 1000);
    d.setHours(0, 0, 0, 0);
    const days = step / DAY;
    while (d.getTime() / 1000 <= to) {
      if (d.getTime() / 1000 >= from) ticks.push(d.getTime() / 1000);
      d.setDate(d.getDate() + days);
    }
    return {step, ticks};
  }
  // Below a day: aligned to the local clock (the offset of `from`).
  const offset = -new Date(from * 1000).getTimezoneOffset() * 60;
  let t = Math.ceil((from + offset) / step) * step - offset;
  for (; t <= to; t += step) ticks.push(t);
  return {step, ticks};
}

function pad(n) {
  return String(n).padStart(2, '0');
}

export function formatTick(t, step) {
  const d = new Date(t * 1000);
  const month = d.toLocaleString(undefined, {month: 'short'});
  if (step >= 365 * DAY) return String(d.getFullYear());
  if (step >= 30 * DAY) return `${month} ${d.getFullYear()}`;
  if (step >= DAY) return `${d.getDate()} ${month}`;
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (step < MINUTE) return `${hm}:${pad(d.getSeconds())}`;
  if (d.getHours() === 0 && d.getMinutes() === 0) return `${d.getDate()} ${month}`;
  return hm;
}

// Round value ticks over [lo, hi]: about `count` of them.
export function valueTicks(lo, hi, count) {
  if (!(hi > lo)) {
    const m = Math.abs(lo) || 1;
    lo -= m * 0.1;
    hi += m * 0.1;
  }
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw);
  const ticks = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  if (ticks[0] > lo) ticks.unshift(ticks[0] - step);
  if (ticks[ticks.length - 1] < hi) ticks.push(ticks[ticks.length - 1] + step);
  return ticks;
}

export function formatNumber(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
  return Number(v.toPrecision(6)).toLocaleString(undefined, {maximumFractionDigits: 3});
}

const LEFT = 56;
const RIGHT = 12;

// The chart's width for a host `hostWidth` pixels wide (0 when hidden).
function chartWidth(hostWidth) {
  return Math.max(300, hostWidth || 600);
}

// How many pixel columns the plot of a chart in a host `hostWidth` wide
// has: a state lane with more spans than this is drawn from buckets.
export function plotColumns(hostWidth) {
  return chartWidth(hostWidth) - LEFT - RIGHT;
}

export function drawChart(host, spec, {onZoom} = {}) {
  host.textContent = '';
  const lines = spec.lines || [];
  const bars = spec.bars || [];
  const lanes = spec.lanes || [];
  const width = chartWidth(host.clientWidth);
  const left = LEFT;
  const right = RIGHT;
  const plotH = lines.length || bars.length ? (width < 500 ? 180 : 260) : 0;
  const laneH = 26;
  const top = 8;
  const lanesTop = top + plotH + (plotH ? 10 : 0);
  const axisY = lanesTop + lanes.length * (laneH + 4);
  const height = axisY + 24;
  const svg = el('svg', {
    class: 'chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
  }, host);
  const x0 = left;
  const x1 = width - right;
  const {from, to} = spec;
  const X = (t) => x0 + ((t - from) / (to - from)) * (x1 - x0);
  const clipX = (x) => Math.max(x0, Math.min(x1, x));

  // Time axis and grid.
  const tt = timeTicks(from, to, Math.max(2, Math.floor((x1 - x0) / 90)));
  const grid = el('g', {class: 'grid'}, svg);
  const axis = el('g', {class: 'axis'}, svg);
  for (const t of tt.ticks) {
    const x = X(t);
    el('line', {x1: x, x2: x, y1: top, y2: axisY}, grid);
    const label = el('text', {x, y: axisY + 16, 'text-anchor': 'middle'}, axis);
    label.textContent = formatTick(t, tt.step);
  }

  // The value plot: lines, bands and bars on one axis.
  if (plotH) {
    let lo = Infinity;
    let hi = -Infinity;
    const see = (v) => {
      if (v === null || v === undefined || !Number.isFinite(v)) return;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    };
    for (const s of lines) {
      for (const [, v] of s.points) see(v);
      for (const [, a, b] of s.band || []) {
        see(a);
        see(b);
      }
    }
    for (const s of bars) {
      see(0);
      for (const [, v] of s.points) see(v);
    }
    if (lo === Infinity) {
      lo = 0;
      hi = 1;
    }
    const vt = valueTicks(lo, hi, plotH < 200 ? 4 : 6);
    const vlo = vt[0];
    const vhi = vt[vt.length - 1];
    const Y = (v) => top + plotH - ((v - vlo) / (vhi - vlo)) * plotH;
    for (const v of vt) {
      el('line', {x1: x0, x2: x1, y1: Y(v), y2: Y(v)}, grid);
      const label = el('text', {x: x0 - 6, y: Y(v) + 4, 'text-anchor': 'end'}, axis);
      label.textContent = formatNumber(v);
    }
    const plot = el('g', {class: 'plot'}, svg);
    for (const s of bars) {
      const g = el('g', {class: 'bars ' + s.cls, 'data-key': s.name}, plot);
      const w = s.width;
      for (const [t, v] of s.points) {
        if (v === null || v === undefined) continue;
        const a = clipX(X(t));
        const b = clipX(X(t + w));
        const y = Y(Math.max(0, v));
        const h = Math.abs(Y(v) - Y(0));
        const r = el('rect', {x: a, y, width: Math.max(1, b - a - 1), height: Math.max(0.5, h)}, g);
        el('title', {}, r).textContent = `${formatTick(t, 1)}: ${formatNumber(v)}`;
      }
      for (const t of s.resets || []) {
        const x = clipX(X(t));
        const m = el('path', {class: 'reset', d: `M${x - 5},${top} L${x + 5},${top} L${x},${top + 8} Z`}, g);
        el('title', {}, m).textContent = 'counter reset ' + formatTick(t, 1);
      }
    }
    for (const s of lines) {
      const g = el('g', {class: 'series ' + s.cls, 'data-key': s.name}, plot);
      if (s.band && s.band.length) {
        // One closed shape per run of known buckets: the highs left to
        // right, then the lows back.
        let runs = [];
        let run = [];
        for (const p of s.band) {
          if (p[1] === null || p[2] === null) {
            if (run.length) runs.push(run);
            run = [];
          } else {
            run.push(p);
          }
        }
        if (run.length) runs.push(run);
        let d = '';
        for (const r of runs) {
          d += 'M' + r.map(([t, , b]) => `${X(t).toFixed(1)},${Y(b).toFixed(1)}`).join('L');
          d += 'L' + r.slice().reverse().map(([t, a]) => `${X(t).toFixed(1)},${Y(a).toFixed(1)}`).join('L');
          d += 'Z';
        }
        if (d) el('path', {class: 'band', d}, g);
      }
      let d = '';
      let pen = false;
      for (const [t, v] of s.points) {
        if (v === null || v === undefined) {
          pen = false;
          continue;
        }
        const x = clipX(X(t)).toFixed(1);
        const y = Y(v).toFixed(1);
        if (!pen) d += `M${x},${y}`;
        else if (s.step) d += `H${x}V${y}`;
        else d += `L${x},${y}`;
        pen = true;
      }
      if (s.step && pen && s.until !== undefined) d += `H${clipX(X(s.until)).toFixed(1)}`;
      if (d) el('path', {class: 'line', d, 'data-points': s.points.length}, g);
      if (s.dots) {
        for (const [t, v] of s.points) {
          // The value in force at `from` is not a change: no dot.
          if (v === null || v === undefined || t <= from) continue;
          const c = el('circle', {class: 'dot', cx: X(t).toFixed(1), cy: Y(v).toFixed(1), r: 2.5}, g);
          el('title', {}, c).textContent = `${formatTick(t, 1)}: ${formatNumber(v)}`;
        }
      }
    }
  }

  // State lanes: one band per key, a rectangle per span of a value; with
  // more spans than pixels, a rectangle per run of pixel columns that one
  // value held longest (laneRuns).
  lanes.forEach((lane, i) => {
    const y = lanesTop + i * (laneH + 4);
    const g = el('g', {class: 'lane', 'data-key': lane.name}, svg);
    el('rect', {class: 'unknown', x: x0, y, width: x1 - x0, height: laneH}, g);
    if (lane.buckets) {
      // From the server's buckets: what they add up to is kept on the lane
      // (seconds per state and unknown, from the first bucket's start), to
      // be checked against stats.
      g.setAttribute('data-bucketed', 'true');
      g.setAttribute('data-step', lane.step);
      const seconds = {unknown: 0};
      for (const [a, b, parts] of lane.buckets) {
        let known = 0;
        for (const [value, s] of Object.entries(parts)) {
          seconds[value] = (seconds[value] || 0) + s;
          known += s;
        }
        seconds.unknown += b - a - known;
      }
      if (lane.buckets.length) g.setAttribute('data-from', lane.buckets[0][0]);
      g.setAttribute('data-seconds', JSON.stringify(seconds));
      for (const [xa, xb, value, ta, tb] of bucketRuns(lane.buckets, X, clipX)) {
        const r = el('rect', {class: 'state ' + lane.cls(value), x: xa, y, width: Math.max(0.5, xb - xa), height: laneH}, g);
        el('title', {}, r).textContent = `mostly ${value}: ${formatTick(ta, 1)} – ${formatTick(tb, 1)}`;
      }
    } else if (lane.spans.length > x1 - x0) {
      g.setAttribute('data-bucketed', 'true');
      for (const [xa, xb, value] of laneRuns(lane.spans, X, x0, x1)) {
        const r = el('rect', {class: 'state ' + lane.cls(value), x: xa, y, width: xb - xa, height: laneH}, g);
        el('title', {}, r).textContent = `mostly ${value}`;
      }
    } else {
      for (const [a, b, value] of lane.spans) {
        const xa = clipX(X(a));
        const xb = clipX(X(b));
        if (xb <= xa) continue;
        const r = el('rect', {class: 'state ' + lane.cls(value), x: xa, y, width: Math.max(0.5, xb - xa), height: laneH}, g);
        el('title', {}, r).textContent = `${value}: ${formatTick(a, 1)} – ${formatTick(b, 1)}`;
      }
    }
    if (lanes.length > 1 || spec.labelLanes) {
      const label = el('text', {class: 'lane-label', x: x0 + 4, y: y + laneH / 2 + 4}, g);
      label.textContent = lane.name;
    }
  });

  // Drag across to zoom in.
  const hit = el('rect', {class: 'hit', x: x0, y: top, width: x1 - x0, height: axisY - top}, svg);
  const sel = el('rect', {class: 'selection', x: 0, y: top, width: 0, height: axisY - top}, svg);
  let start = null;
  const pointX = (e) => {
    const box = svg.getBoundingClientRect();
    return clipX((e.clientX - box.left) * (width / box.width));
  };
  hit.addEventListener('pointerdown', (e) => {
    start = pointX(e);
    hit.setPointerCapture(e.pointerId);
    sel.setAttribute('x', start);
    sel.setAttribute('width', 0);
  });
  const readout = hoverReadout(svg, spec, {X, x0, x1, top, bottom: axisY, width});
  hit.addEventListener('pointerleave', () => readout(null));
  hit.addEventListener('pointermove', (e) => {
    const x = pointX(e);
    readout(x);
    if (start === null) return;
    sel.setAttribute('x', Math.min(start, x));
    sel.setAttribute('width', Math.abs(x - start));
  });
  const end = (e) => {
    if (start === null) return;
    const x = pointX(e);
    const a = Math.min(start, x);
    const b = Math.max(start, x);
    start = null;
    sel.setAttribute('width', 0);
    if (b - a < 4 || !onZoom) return;
    const T = (px) => from + ((px - x0) / (x1 - x0)) * (to - from);
    onZoom(T(a), T(b));
  };
  hit.addEventListener('pointerup', end);
  hit.addEventListener('pointercancel', () => {
    start = null;
    sel.setAttribute('width', 0);
  });
  return svg;
}

// Spans [[t0, t1, value]] bucketed by pixel column across [x0, x1): each
// column takes the value that held longest in it (none when the known time
// covers less than half of it), and neighbouring columns of one value are
// one run. Returns [[xa, xb, value]]; work in proportion to the spans plus
// the columns, whatever the spans' count.
function laneRuns(spans, X, x0, x1) {
  const columns = Math.max(1, Math.ceil(x1 - x0));
  const tally = Array.from({length: columns}, () => new Map());
  for (const [a, b, value] of spans) {
    const xa = Math.max(x0, X(a)) - x0;
    const xb = Math.min(x1, X(b)) - x0;
    if (!(xb > xa)) continue;
    for (let c = Math.floor(xa); c < Math.min(columns, Math.ceil(xb)); ++c) {
      const part = Math.min(xb, c + 1) - Math.max(xa, c);
      if (part > 0) tally[c].set(value, (tally[c].get(value) || 0) + part);
    }
  }
  const runs = [];
  for (let c = 0; c < columns; ++c) {
    let best = null;
    let most = 0;
    let known = 0;
    for (const [value, part] of tally[c]) {
      known += part;
      if (part > most) {
        most = part;
        best = value;
      }
    }
    if (known < 0.5) best = null;
    const last = runs[runs.length - 1];
    if (best === null) continue;
    if (last && last[2] === best && last[1] === x0 + c) last[1] = Math.min(x1, x0 + c + 1);
    else runs.push([x0 + c, Math.min(x1, x0 + c + 1), best]);
  }
  return runs;
}

// The state that held longest in each bucket [t0, t1, {value: seconds}]
// (none when less than half of it is known), neighbouring buckets of one
// state as one run. Returns [[xa, xb, value, ta, tb]], clipped to the plot.
function bucketRuns(buckets, X, clipX) {
  const runs = [];
  for (const [a, b, parts] of buckets) {
    let best = null;
    let most = 0;
    let known = 0;
    for (const [value, s] of Object.entries(parts)) {
      known += s;
      if (s > most) {
        most = s;
        best = value;
      }
    }
    const xa = clipX(X(a));
    const xb = clipX(X(b));
    if (best === null || known < (b - a) / 2 || !(xb > xa)) continue;
    const last = runs[runs.length - 1];
    if (last && last[2] === best && last[4] === a) {
      last[1] = xb;
      last[4] = b;
    } else {
      runs.push([xa, xb, best, a, b]);
    }
  }
  return runs;
}

// The value in force at `t` in time-ordered [t, v…] rows: the last row at or
// before it (for buckets, the bucket holding it).
function rowAt(rows, t) {
  let lo = 0;
  let hi = rows.length - 1;
  if (hi < 0 || rows[0][0] > t) return null;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (rows[mid][0] <= t) lo = mid;
    else hi = mid - 1;
  }
  return rows[lo];
}

// A vertical line under the pointer and, beside it, the time and each
// series' value there. Returns show(x) (null hides it).
function hoverReadout(svg, spec, {X, x0, x1, top, bottom, width}) {
  const g = el('g', {class: 'readout', visibility: 'hidden'}, svg);
  const line = el('line', {class: 'cursor', y1: top, y2: bottom}, g);
  const box = el('rect', {class: 'readout-box', rx: 3}, g);
  const text = el('text', {}, g);
  const T = (px) => spec.from + ((px - x0) / (x1 - x0)) * (spec.to - spec.from);
  return (x) => {
    if (x === null) {
      g.setAttribute('visibility', 'hidden');
      return;
    }
    const t = T(x);
    const rows = [formatTick(t, 1)];
    for (const s of spec.lines || []) {
      // Buckets are drawn at their middles: look up by their start.
      const half = s.step ? 0 : (s.points.length > 1 ? (s.points[1][0] - s.points[0][0]) / 2 : 0);
      const r = rowAt(s.points, t + half);
      rows.push(`${s.name}: ${r ? formatNumber(r[1]) : '–'}`);
    }
    for (const s of spec.bars || []) {
      const r = rowAt(s.points, t);
      rows.push(`${s.name}: ${r && t < r[0] + s.width ? formatNumber(r[1]) : '–'}`);
    }
    for (const lane of spec.lanes || []) {
      if (lane.buckets) {
        const r = rowAt(lane.buckets, t);
        const parts = r && t < r[1] ? Object.entries(r[2]) : [];
        const span = r ? r[1] - r[0] : 0;
        const text = parts.filter(([, s]) => s > 0).sort((p, q) => q[1] - p[1])
            .map(([v, s]) => `${v} ${formatNumber(100 * s / span)} %`).join(', ');
        rows.push(`${lane.name}: ${text || 'unknown'}`);
        continue;
      }
      const span = lane.spans.find(([a, b]) => a <= t && t < b);
      rows.push(`${lane.name}: ${span ? span[2] : 'unknown'}`);
    }
    text.textContent = '';
    rows.forEach((r, i) => {
      const ts = el('tspan', {x: 0, dy: i ? 14 : 0}, text);
      ts.textContent = r;
    });
    g.setAttribute('visibility', 'visible');
    line.setAttribute('x1', x);
    line.setAttribute('x2', x);
    const w = Math.max(...rows.map((r) => r.length)) * 6.5 + 12;
    const h = rows.length * 14 + 8;
    const bx = x + 10 + w > width ? x - 10 - w : x + 10;
    box.setAttribute('x', bx);
    box.setAttribute('y', top + 4);
    box.setAttribute('width', w);
    box.setAttribute('height', h);
    text.setAttribute('transform', `translate(${bx + 6},${top + 18})`);
    for (const ts of text.children) ts.setAttribute('x', 0);
  };
}
