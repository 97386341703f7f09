// A time-series line chart drawn on a <canvas>: fixed window ending now (so it moves as time
// passes), "nice" y ticks, a legend with each series' latest value. No library.
//
// new Chart(container, { title, unit, series: [{ key, label, color }], format, windowSecs })
// chart.update({ t: [ms...], key: [values...] })  — null values leave gaps.
// The container's data-latest holds the latest values (JSON), for tests and tooltips.

const PAD = { left: 52, right: 12, top: 10, bottom: 22 };

/** Rounds a raw step up to 1, 2 or 5 × 10^n. */
function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

export class Chart {
  constructor(container, { title, unit = '', series, format = (v) => String(v), windowSecs = 300 }) {
    this.series = series;
    this.format = format;
    this.windowMs = windowSecs * 1000;
    this.el = container;
    container.classList.add('chart');
    const head = document.createElement('div');
    head.className = 'chart-head';
    const h = document.createElement('h3');
    h.textContent = unit ? `${title} (${unit})` : title;
    this.legend = document.createElement('div');
    this.legend.className = 'legend';
    head.append(h, this.legend);
    this.canvas = document.createElement('canvas');
    this.canvas.height = 150;
    container.append(head, this.canvas);
    this.data = { t: [] };
  }

  update(data) {
    this.data = data;
    const latest = {};
    for (const s of this.series) {
      const v = data[s.key] ?? [];
      latest[s.key] = v.length ? v[v.length - 1] : null;
    }
    this.el.dataset.latest = JSON.stringify(latest);
    this.el.dataset.points = String(data.t.length);
    this.legend.replaceChildren(
      ...this.series.map((s) => {
        const item = document.createElement('span');
        const dot = document.createElement('i');
        dot.style.background = s.color;
        item.append(dot, `${s.label} `);
        const b = document.createElement('b');
        b.textContent = latest[s.key] == null ? '—' : this.format(latest[s.key]);
        item.append(b);
        return item;
      }),
    );
    this.draw();
  }

  draw() {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(200, this.canvas.clientWidth || this.el.clientWidth || 400);
    const height = 150;
    if (this.canvas.width !== Math.round(width * dpr)) {
      this.canvas.width = Math.round(width * dpr);
      this.canvas.height = Math.round(height * dpr);
    }
    const g = this.canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    const now = Date.now();
    const t0 = now - this.windowMs;
    const { t } = this.data;
    let max = 0;
    for (const s of this.series) for (const v of this.data[s.key] ?? []) if (v != null && v > max) max = v;
    const step = niceStep(max > 0 ? max / 4 : 1);
    const top = Math.max(step, Math.ceil(max / step) * step);
    const w = width - PAD.left - PAD.right;
    const hgt = height - PAD.top - PAD.bottom;
    const x = (ms) => PAD.left + ((ms - t0) / this.windowMs) * w;
    const y = (v) => PAD.top + hgt - (v / top) * hgt;

    g.font = '11px system-ui, sans-serif';
    g.lineWidth = 1;
    g.strokeStyle = '#e6e9ef';
    g.fillStyle = '#6b7385';
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (let v = 0; v <= top + step / 2; v += step) {
      g.beginPath();
      g.moveTo(PAD.left, Math.round(y(v)) + 0.5);
      g.lineTo(width - PAD.right, Math.round(y(v)) + 0.5);
      g.stroke();
      g.fillText(this.format(v), PAD.left - 6, y(v));
    }
    g.textAlign = 'center';
    g.textBaseline = 'top';
    for (let m = 0; m <= this.windowMs / 60000; m++) {
      const ms = now - m * 60000;
      g.fillText(m === 0 ? 'now' : `-${m}m`, Math.min(x(ms), width - PAD.right - 10), height - PAD.bottom + 6);
    }
    g.lineWidth = 2;
    g.lineJoin = 'round';
    for (const s of this.series) {
      const v = this.data[s.key] ?? [];
      g.strokeStyle = s.color;
      g.beginPath();
      let pen = false;
      for (let i = 0; i < t.length; i++) {
        if (t[i] < t0 || v[i] == null) { pen = false; continue; }
        if (pen) g.lineTo(x(t[i]), y(v[i]));
        else g.moveTo(x(t[i]), y(v[i]));
        pen = true;
      }
      g.stroke();
    }
  }
}
