// @ts-check
/**
 * Live line charts drawn on `<canvas>`: one per measure (ops/s, hit ratio, memory, evictions),
 * fed by polling `/v1/stats`. Each chart keeps its last points and shows the latest value as text
 * next to it; the canvas carries the number of points in `data-points`.
 */

/** Points kept per chart. */
export const MAX_POINTS = 60

/** A line chart on one canvas. */
export class LineChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {HTMLElement} label where the latest value is written
   * @param {{ format: (value: number) => string, color: string, min?: number, max?: number }} options
   */
  constructor(canvas, label, options) {
    this.canvas = canvas
    this.label = label
    this.options = options
    /** @type {number[]} */
    this.points = []
  }

  /**
   * Adds a point and redraws.
   *
   * @param {number} value
   */
  push(value) {
    this.points.push(Number.isFinite(value) ? value : 0)
    if (this.points.length > MAX_POINTS) this.points.shift()
    this.canvas.dataset.points = String(this.points.length)
    this.label.textContent = this.options.format(value)
    this.draw()
  }

  /** Draws the points, scaled to the canvas's size on screen. */
  draw() {
    const canvas = this.canvas
    const ratio = window.devicePixelRatio || 1
    const width = canvas.clientWidth || 300
    const height = canvas.clientHeight || 90
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio)
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio)
    const context = canvas.getContext('2d')
    if (context === null) return
    context.setTransform(ratio, 0, 0, ratio, 0, 0)
    context.clearRect(0, 0, width, height)
    const style = getComputedStyle(canvas)
    const grid = style.getPropertyValue('--grid').trim() || '#e5e7eb'
    const text = style.getPropertyValue('--muted').trim() || '#6b7280'
    const top = 14
    const bottom = height - 4
    context.strokeStyle = grid
    context.lineWidth = 1
    for (const y of [top, (top + bottom) / 2, bottom]) {
      context.beginPath()
      context.moveTo(0, Math.round(y) + 0.5)
      context.lineTo(width, Math.round(y) + 0.5)
      context.stroke()
    }
    const points = this.points
    const min = this.options.min ?? Math.min(0, ...points)
    const highest = Math.max(...points, min + 1e-9)
    const max = this.options.max ?? highest * 1.1
    context.fillStyle = text
    context.font = '10px system-ui, sans-serif'
    context.fillText(this.options.format(max), 4, 10)
    if (points.length < 2) return
    const step = width / (MAX_POINTS - 1)
    const start = width - step * (points.length - 1)
    /** @param {number} value */
    const yOf = (value) => bottom - ((value - min) / (max - min || 1)) * (bottom - top)
    context.beginPath()
    points.forEach((value, i) => {
      const x = start + i * step
      if (i === 0) context.moveTo(x, yOf(value))
      else context.lineTo(x, yOf(value))
    })
    context.strokeStyle = this.options.color
    context.lineWidth = 2
    context.stroke()
    context.lineTo(start + (points.length - 1) * step, bottom)
    context.lineTo(start, bottom)
    context.closePath()
    context.globalAlpha = 0.12
    context.fillStyle = this.options.color
    context.fill()
    context.globalAlpha = 1
  }
}
