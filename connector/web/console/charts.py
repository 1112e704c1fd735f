"""The Overview's chart, drawn on the server as inline SVG: it shows with no script and no
outside host, and scales to the page's width (a viewBox, no fixed size)."""

from datetime import UTC, datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 200
SERIES = (("sends", "sends"), ("delivered", "delivered"), ("failed", "failed"))


def bars(bars, per_bar):
    """Grouped bars (sends, delivered, failed) per hour, or per day when `per_bar` is 24."""
    top = max([b[name] for b in bars for name, _ in SERIES] + [1])
    slot = WIDTH / max(len(bars), 1)
    width = max(slot / 4, 0.5)
    parts = [
        (
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + 2}" role="img" '
            f'aria-labelledby="chart-title" preserveAspectRatio="none">'
        ),
        (
            f'<title id="chart-title">Sends, delivered and failed per '
            f"{'day' if per_bar == 24 else 'hour'}; highest bar {top}</title>"
        ),
        f'<line class="axis" x1="0" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}"/>',
    ]
    for i, bar in enumerate(bars):
        for j, (name, css) in enumerate(SERIES):
            h = HEIGHT * bar[name] / top
            x = i * slot + (j + 0.5) * width
            parts.append(
                f'<rect class="{css}" x="{x:.1f}" y="{HEIGHT - h:.1f}" width="{width:.1f}" '
                f'height="{h:.1f}"><title>{escape(_label(bar["start"], per_bar))}: '
                f"{bar[name]} {name}</title></rect>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def span(bars, per_bar):
    """What the chart's x axis covers, as text under it (SVG text would stretch with it)."""
    if not bars:
        return ""
    return f"{_label(bars[0]['start'], per_bar)} to {_label(bars[-1]['start'], per_bar)} UTC"


def _label(epoch, per_bar):
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%m-%d") if per_bar == 24 else moment.strftime("%m-%d %H:00")
