// Charts: plain SVG, drawn at the container's width so that text keeps its size on a phone.
import { $, compact, el, plain, svg, twoDigits } from './dom.js';

const MARGIN = { left: 56, right: 24, top: 12, bottom: 40 };

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = niceStep(value / 5);
  return Math.ceil(value / step) * step;
}

function ticks(min, max, count) {
  const step = niceStep((max - min) / Math.max(1, count));
  const values = [];
  for (let value = Math.ceil(min / step) * step; value <= max + step * 1e-9; value += step) {
    values.push(+value.toFixed(10)); // 0.30000000000000004 is 0.3
  }
  return values;
}

// Labels of one axis in one style: 10K, 20K (compact) once its numbers are long, else as they are.
function tickLabels(values) {
  const format = maxOf(values.map(Math.abs)) >= 10000 ? compact : plain;
  return values.map((value) => format.format(value));
}

function maxOf(values) {
  let most = -Infinity;
  for (const value of values) if (value > most) most = value;
  return most;
}

// An empty chart: axes, ticks, labels; the data-to-pixel mapping is on the SVG for anyone (a test) to read back.
function chart({ name, width, height, xMin, xMax, yMin, yMax, xLabel, yLabel, label }) {
  const plot = {
    left: MARGIN.left, top: MARGIN.top,
    width: width - MARGIN.left - MARGIN.right, height: height - MARGIN.top - MARGIN.bottom,
  };
  const root = svg('svg', {
    class: 'chart', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': label,
    'data-chart': name, 'data-x-min': xMin, 'data-x-max': xMax, 'data-y-min': yMin, 'data-y-max': yMax,
    'data-plot-left': plot.left, 'data-plot-top': plot.top,
    'data-plot-width': plot.width, 'data-plot-height': plot.height,
  });
  const bottom = plot.top + plot.height;
  const x = (value) => plot.left + ((value - xMin) / (xMax - xMin)) * plot.width;
  const y = (value) => plot.top + (1 - (value - yMin) / (yMax - yMin)) * plot.height;
  const axes = svg('g', { class: 'axes', 'aria-hidden': 'true' });
  const yTicks = ticks(yMin, yMax, Math.floor(plot.height / 45));
  tickLabels(yTicks).forEach((text, index) => {
    const at = y(yTicks[index]);
    axes.append(svg('line', { class: 'grid', x1: plot.left, x2: plot.left + plot.width, y1: at, y2: at }));
    axes.append(svg('text', { x: plot.left - 6, y: at, 'text-anchor': 'end', 'dominant-baseline': 'middle' }, text));
  });
  const xTicks = ticks(Math.max(0, xMin), xMax, Math.floor(plot.width / 70));
  tickLabels(xTicks).forEach((text, index) => {
    const at = x(xTicks[index]);
    axes.append(svg('line', { class: 'tick', x1: at, x2: at, y1: bottom, y2: bottom + 5 }));
    axes.append(svg('text', { x: at, y: bottom + 18, 'text-anchor': 'middle' }, text));
  });
  axes.append(svg('line', { class: 'axis', x1: plot.left, x2: plot.left + plot.width, y1: bottom, y2: bottom }));
  axes.append(svg('line', { class: 'axis', x1: plot.left, x2: plot.left, y1: plot.top, y2: bottom }));
  const middle = { x: plot.left + plot.width / 2, y: plot.top + plot.height / 2 };
  axes.append(svg('text', { class: 'label', x: middle.x, y: height - 4, 'text-anchor': 'middle' }, xLabel));
  const upright = `translate(14 ${middle.y}) rotate(-90)`;
  axes.append(svg('text', { class: 'label', transform: upright, 'text-anchor': 'middle' }, yLabel));
  root.append(axes);
  return { root, x, y, plot };
}

const pixel = (value) => Math.round(value * 10) / 10;

function linePath(x, y, values) {
  let d = '';
  for (let day = 0; day < values.length; day++) {
    d += `${day ? 'L' : 'M'}${pixel(x(day))},${pixel(y(values[day]))}`;
  }
  return d;
}

// The band's outline: along `high` left to right, then back along `low`.
function bandPath(x, y, low, high) {
  let d = linePath(x, y, high);
  for (let day = low.length - 1; day >= 0; day--) d += `L${pixel(x(day))},${pixel(y(low[day]))}`;
  return `${d}Z`;
}

// Draw the chart(s) into a figure in the page, timed as the `chart` performance measure, and again on resize.
function drawInto(container, shown, draw) {
  const redraw = () => {
    const start = performance.now();
    const width = Math.max(280, Math.floor(container.clientWidth));
    container.replaceChildren(...draw(width, width < 520 ? 240 : 320));
    container.getBoundingClientRect(); // lay it out: part of drawing it
    performance.measure('chart', { start, end: performance.now() });
    return width;
  };
  let drawnAt = redraw();
  shown.redraw = () => {
    if (Math.floor(container.clientWidth) !== drawnAt) drawnAt = redraw();
  };
}

function legend(...items) {
  const keys = items.map(([kind, text]) => el('span', { class: `key ${kind}`, text }));
  return el('p', { class: 'legend', 'aria-hidden': 'true' }, ...keys);
}

function band(values, format = plain) {
  return `${format.format(values.median)} (90%: ${format.format(values.low)} to ${format.format(values.high)})`;
}

function summary(rows) {
  const pairs = rows.flatMap(([term, value]) => [el('dt', { text: term }), el('dd', { text: value })]);
  return el('dl', { class: 'summary' }, ...pairs);
}

export function showSimulation(result, shown) {
  const { low, median, high } = result.infectious;
  const figure = el('figure', { class: 'figure' });
  $('task-result').replaceChildren(
    figure,
    legend(['line', 'median'], ['band', '90% of runs']),
    summary([
      ['peak day', band(result.peak_day)],
      ['peak size', band(result.peak_size)],
      ['final size', band(result.final_size)],
      ['runs', `${plain.format(result.runs)} over ${plain.format(result.days)} days (seed ${result.seed})`],
      ['died out', `${plain.format(100 * result.died_out)}% of runs`],
    ].filter(([, value]) => !value.includes('undefined'))),
  );
  drawInto(figure, shown, (width, height) => {
    const c = chart({
      name: 'infectious', width, height, xMin: 0, xMax: Math.max(1, median.length - 1), yMin: 0,
      yMax: niceMax(maxOf(high)), xLabel: 'day', yLabel: 'infectious people',
      label: 'Infectious people by day: the median of the runs and its 90% band',
    });
    c.root.append(svg('path', { class: 'band', 'data-series': 'band', d: bandPath(c.x, c.y, low, high) }));
    c.root.append(svg('path', { class: 'line', 'data-series': 'median', d: linePath(c.x, c.y, median) }));
    return [c.root];
  });
}

export function showEnkf(result, params, shown) {
  const rt = result.rt;
  const cases = Array.isArray(params?.cases) ? params.cases : [];
  const figure = el('figure', { class: 'figure' });
  const last = rt[rt.length - 1];
  $('task-result').replaceChildren(
    figure,
    legend(['line', 'R(t) median'], ['band', '90% band'], ['reference', 'R = 1'], ['bar', 'cases']),
    summary([
      ['R(t) on the last day', band(last, twoDigits)],
      ['days with a median R(t) over 1', `${rt.filter((day) => day.median > 1).length} of ${result.days ?? rt.length}`],
    ]),
  );
  const low = rt.map((day) => day.low);
  const median = rt.map((day) => day.median);
  const high = rt.map((day) => day.high);
  // The day axis runs half a day past each end, so that the first and last bars of cases fit.
  const xMin = -0.5;
  const xMax = rt.length - 0.5;
  drawInto(figure, shown, (width, height) => {
    const r = chart({
      name: 'rt', width, height, xMin, xMax, yMin: 0, yMax: niceMax(Math.max(1.5, maxOf(high))),
      xLabel: 'day', yLabel: 'R(t)', label: 'R(t) by day: the median estimate, its 90% band, and R = 1',
    });
    const one = pixel(r.y(1));
    r.root.append(svg('path', { class: 'band', 'data-series': 'band', d: bandPath(r.x, r.y, low, high) }));
    r.root.append(svg('line', {
      class: 'reference', 'data-series': 'reference', x1: r.plot.left, x2: r.plot.left + r.plot.width, y1: one, y2: one,
    }));
    r.root.append(svg('path', { class: 'line', 'data-series': 'median', d: linePath(r.x, r.y, median) }));
    const c = chart({
      name: 'cases', width, height: Math.round(height * 0.6), xMin, xMax, yMin: 0, yMax: niceMax(maxOf(cases)),
      xLabel: 'day', yLabel: 'cases', label: 'Cases by day, as given',
    });
    const bars = svg('g', { class: 'bars', 'data-series': 'cases' });
    const barWidth = pixel(Math.max(1, (c.plot.width / rt.length) * 0.7));
    const base = c.plot.top + c.plot.height;
    cases.forEach((count, day) => {
      const top = pixel(c.y(count));
      const left = pixel(c.x(day) - barWidth / 2);
      bars.append(svg('rect', { x: left, y: top, width: barWidth, height: pixel(base - top) }));
    });
    c.root.append(bars);
    return [r.root, c.root];
  });
}
