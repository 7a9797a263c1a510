"""Figure builders: a DataFrame in, a plotly Figure out. No Streamlit here.

Conventions: French number format through ``layout.separators`` (``1 234 567``,
``12,3``), amounts in euros, shares given as fractions in [0, 1] and shown as
percentages with a space before ``%``; maps are ``go.Choropleth`` over shipped
geometries (no tile server: the app works offline).
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from analytics import geo

PRIMARY = "#1F4E79"
ACCENT = "#2E8B57"
GREY = "#9AA5B1"
LIGHT = "#EEF1F4"
PALETTE = ["#1F4E79", "#2E8B57", "#D98E04", "#8E3B46", "#5B7DB1", "#6C8EAD", "#A3B18A", "#B56576"]
SEQUENTIAL = [[0.0, "#E3EDF7"], [0.35, "#9CC1E0"], [0.7, "#3E7CB1"], [1.0, "#123B63"]]
FONT = "Helvetica, Arial, sans-serif"  # measured by plotly as drawn: no webfont swap
MAX_LABEL = 40

# plotly_white, restricted to the trace types drawn here, built once: naming the whole
# template on a figure costs about 22 ms (validated and copied each time), this 9 ms,
# for the same look.
_WHITE = pio.templates["plotly_white"]
TEMPLATE = go.layout.Template(
    layout=_WHITE.layout,
    data={kind: getattr(_WHITE.data, kind) for kind in ("bar", "choropleth", "scatter", "scattergeo")},
)


def _layout(fig: go.Figure, *, height: int = 380, title: str | None = None, legend: bool = True) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE,
        separators=", ",  # decimal comma, space between thousands
        font={"family": FONT, "size": 13, "color": "#1D2733"},
        height=height,
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        title={"text": title, "x": 0, "font": {"size": 15}} if title else None,
        colorway=PALETTE,
        showlegend=legend,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        hoverlabel={"font": {"family": FONT}},
    )
    return fig


def _short(text, n: int = MAX_LABEL) -> str:
    s = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
    return s if len(s) <= n else s[: n - 1] + "…"


def eur_short(v: float) -> str:
    """12 345 678 -> '12,3 M€' (axis and colour-bar labels)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    a = abs(v)
    for div, unit in ((1e9, "Md€"), (1e6, "M€"), (1e3, "k€")):
        if a >= div:
            num = v / div
            txt = f"{num:.1f}" if abs(num) < 100 else f"{num:.0f}"
            if txt.endswith(".0"):
                txt = txt[:-2]
            return txt.replace(".", ",") + f" {unit}"
    return f"{v:.0f} €"


def empty_figure(message: str, height: int = 260) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(
        text=message,
        showarrow=False,
        font={"size": 14, "color": GREY},
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, height=height, legend=False)


# --- maps ----------------------------------------------------------------------------


def _log_ticks(zmin: float, zmax: float) -> tuple[list[float], list[str]]:
    lo, hi = math.floor(zmin), math.ceil(zmax)
    vals = list(range(lo, hi + 1)) or [lo]
    return vals, [eur_short(10**v) for v in vals]


def _no_topojson_anchor(geojson: dict | None = None) -> go.Scattergeo:
    """An invisible first trace. plotly.js downloads a world topojson from its CDN when
    the first trace of a geo subplot has a ``locationmode`` (every choropleth does); a
    Scattergeo with plain lon/lat first keeps the map fully offline. Its point is put on
    the geometry's first vertex so that it never widens the fitted bounds."""
    lon, lat = 2.5, 46.5
    if geojson and geojson.get("features"):
        lon, lat = _first_vertex(geojson["features"][0]["geometry"]["coordinates"])
    return go.Scattergeo(
        lon=[lon],
        lat=[lat],
        mode="markers",
        marker={"size": 1, "opacity": 0},
        hoverinfo="skip",
        showlegend=False,
    )


def _first_vertex(coords):
    while isinstance(coords[0], (list, tuple)):
        coords = coords[0]
    return float(coords[0]), float(coords[1])


def choropleth(
    df: pd.DataFrame,
    geojson: dict,
    *,
    code_col: str = "code",
    value_col: str = "amount",
    name_col: str | None = "name",
    share_col: str | None = "share",
    outline: tuple[list, list] | None = None,
    boxes: tuple[list, list] | None = None,
    log_scale: bool = True,
    height: int = 620,
    value_label: str = "Montant payé",
    geojson_url: str | None = None,
) -> go.Figure:
    """Spend by area on a choropleth: areas without spend in light grey, the colour on a
    log scale (a buyer's own département would otherwise wash every other one out), the
    territory of reference outlined in black.

    ``geojson_url``: where the browser fetches the same geometry; the figure then carries
    the URL instead of the geometry (smaller, faster). ``geojson`` is still read here for
    the codes and names."""
    ref = geojson_url or geojson
    fig = go.Figure(_no_topojson_anchor(geojson))
    codes_all = [f["properties"]["code"] for f in geojson["features"]]
    names = {f["properties"]["code"]: f["properties"].get("nom", "") for f in geojson["features"]}
    fig.add_trace(
        go.Choropleth(
            geojson=ref,
            locations=codes_all,
            z=[0] * len(codes_all),
            featureidkey="properties.code",
            colorscale=[[0, LIGHT], [1, LIGHT]],
            showscale=False,
            marker_line_color="white",
            marker_line_width=0.6,
            customdata=[[names[c]] for c in codes_all],
            hovertemplate="<b>%{customdata[0]}</b><br>aucune dépense<extra></extra>",
        )
    )
    data = df.copy() if df is not None else pd.DataFrame()
    if len(data):
        data = data[data[code_col].notna()]
        data[code_col] = data[code_col].astype(str)
        data = data[data[code_col].isin(names)]
        amounts = pd.to_numeric(data[value_col], errors="coerce").fillna(0.0).astype(float)
        data = data[amounts > 0]
        amounts = amounts[amounts > 0]
    if len(data):
        label = data[name_col] if name_col and name_col in data else data[code_col].map(names)
        label = label.fillna(data[code_col].map(names)).astype(str)
        share = (
            pd.to_numeric(data[share_col], errors="coerce") * 100
            if share_col and share_col in data
            else amounts / amounts.sum() * 100
        )
        z = amounts.map(lambda v: math.log10(max(v, 1.0))) if log_scale else amounts
        colorbar = {
            "title": {"text": value_label, "side": "top"},
            "orientation": "h",
            "thickness": 12,
            "len": 0.6,
            "x": 0.5,
            "xanchor": "center",
            "y": -0.02,
            "yanchor": "top",
        }
        if log_scale:
            vals, text = _log_ticks(float(z.min()), float(z.max()))
            colorbar.update(tickvals=vals, ticktext=text)
        else:
            colorbar.update(tickformat=",.0f", ticksuffix=" €")
        fig.add_trace(
            go.Choropleth(
                geojson=ref,
                locations=data[code_col],
                z=z,
                featureidkey="properties.code",
                colorscale=SEQUENTIAL,
                marker_line_color="white",
                marker_line_width=0.6,
                customdata=list(zip(label, data[code_col], amounts, share)),
                hovertemplate=(
                    "<b>%{customdata[0]}</b> (%{customdata[1]})<br>%{customdata[2]:,.0f} €"
                    "<br>%{customdata[3]:.1f} % du total<extra></extra>"
                ),
                colorbar=colorbar,
                zmin=float(z.min()) if len(z) else None,
                zmax=float(z.max()) if len(z) else None,
            )
        )
    if boxes and boxes[0]:
        fig.add_trace(
            go.Scattergeo(
                lon=boxes[0],
                lat=boxes[1],
                mode="lines",
                line={"color": GREY, "width": 0.8},
                hoverinfo="skip",
                showlegend=False,
            )
        )
    if outline and outline[0]:
        fig.add_trace(
            go.Scattergeo(
                lon=outline[0],
                lat=outline[1],
                mode="lines",
                line={"color": "#111111", "width": 2.2},
                hoverinfo="skip",
                name="Territoire de référence",
                showlegend=True,
            )
        )
    fig.update_geos(visible=False, fitbounds="geojson", projection_type="mercator", bgcolor="rgba(0,0,0,0)")
    _layout(fig, height=height, legend=bool(outline and outline[0]))
    fig.update_layout(
        margin={"l": 0, "r": 0, "t": 10, "b": 70},
        dragmode=False,
        legend={
            "orientation": "h",
            "y": 1.0,
            "x": 0.0,
            "xanchor": "left",
            "yanchor": "top",
            "bgcolor": "rgba(255,255,255,0.7)",
        },
    )
    return fig


def departement_map(df: pd.DataFrame, territory=None, level: str = "departement", **kw) -> go.Figure:
    # kw: choropleth options, e.g. geojson_url from geo.static_url(level)
    """Choropleth of spend by département (or région) with the overseas insets."""
    if not geo.available(level):
        return empty_figure("Géométries absentes (data/ref) : carte indisponible.")
    outline = None
    if territory is not None:
        try:
            outline = geo.territory_lines(territory)
        except Exception:  # an outline is a nicety; the map stands without it
            outline = None
    return choropleth(df, geo.france_geojson(level), outline=outline, boxes=geo.box_lines(), **kw)


def commune_map(df: pd.DataFrame, departement: str, territory=None, **kw) -> go.Figure:
    """Choropleth of spend by commune for one département."""
    if not geo.communes_available():
        return empty_figure("Géométries des communes absentes : carte indisponible.")
    gj = geo.communes_geojson(departement)
    if not gj["features"]:
        return empty_figure(f"Aucune commune connue pour le département {departement}.")
    outline = None
    if territory is not None:
        try:
            outline = geo.territory_lines(territory)
        except Exception:
            outline = None
    kw.setdefault("height", 520)
    return choropleth(df, gj, outline=outline, **kw)


def points_map(
    df: pd.DataFrame,
    *,
    lon: str = "lon",
    lat: str = "lat",
    text: str = "name",
    departement: str | None = None,
    height: int = 440,
    color: str | None = None,
    color_labels: dict | None = None,
    geojson_url: str | None = None,
) -> go.Figure:
    """Points (a supplier, structures) over a light background: the communes of
    ``departement`` when given, else the départements where the points are."""
    fig = go.Figure()
    pts = (
        df.dropna(subset=[lon, lat]) if df is not None and len(df) else pd.DataFrame(columns=[lon, lat, text])
    )
    gj = None
    ref = None
    if departement and geo.communes_available():
        gj = geo.communes_geojson(departement)
        ref = geojson_url  # the communes of that département, served as a file
    elif geo.available("departement"):
        gj = geo.france_geojson("departement")
        if "departement_code" in pts and pts["departement_code"].notna().any():
            wanted = set(pts["departement_code"].dropna().astype(str))
            gj = {
                "type": "FeatureCollection",
                "features": [f for f in gj["features"] if f["properties"]["code"] in wanted],
            }
    if gj and gj["features"]:
        codes = [f["properties"]["code"] for f in gj["features"]]
        fig.add_trace(_no_topojson_anchor(gj))
        fig.add_trace(
            go.Choropleth(
                geojson=ref or gj,
                locations=codes,
                z=[0] * len(codes),
                featureidkey="properties.code",
                colorscale=[[0, LIGHT], [1, LIGHT]],
                showscale=False,
                marker_line_color="white",
                marker_line_width=0.5,
                hoverinfo="skip",
            )
        )
    groups = [(None, pts)] if not color or color not in pts else list(pts.groupby(color, sort=False))
    for i, (value, part) in enumerate(groups):
        if not len(part):
            continue
        name = (color_labels or {}).get(value, value)
        fig.add_trace(
            go.Scattergeo(
                lon=part[lon],
                lat=part[lat],
                text=part[text].map(_short),
                mode="markers",
                name=str(name) if name is not None else None,
                marker={
                    "size": 8,
                    "color": ACCENT if value is None else PALETTE[(i + 1) % len(PALETTE)],
                    "opacity": 0.85,
                    "line": {"color": "white", "width": 1},
                },
                hovertemplate="%{text}<extra></extra>",
                showlegend=value is not None,
            )
        )
    fig.update_geos(
        visible=False,
        fitbounds="geojson" if gj and gj["features"] else "locations",
        projection_type="mercator",
    )
    _layout(fig, height=height, legend=len(groups) > 1)
    fig.update_layout(margin={"l": 0, "r": 0, "t": 0, "b": 0}, legend={"y": 1.0, "x": 0, "yanchor": "top"})
    return fig


# --- bars, lines, curves -------------------------------------------------------------


def bar_h(
    df: pd.DataFrame,
    label_col: str,
    value_col: str,
    *,
    kind: str = "eur",
    top: int = 15,
    title: str | None = None,
    color: str = PRIMARY,
    height: int | None = None,
    label_len: int = MAX_LABEL,
) -> go.Figure:
    """Horizontal bars, largest on top; ``kind`` 'eur', 'pct' (fractions) or 'int'."""
    if df is None or not len(df):
        return empty_figure("Aucune donnée pour cette sélection.")
    d = df[[label_col, value_col]].copy()
    d[value_col] = pd.to_numeric(d[value_col], errors="coerce")
    d = d.dropna(subset=[value_col]).sort_values(value_col, ascending=False).head(top)
    d = d.iloc[::-1]
    x = d[value_col] * 100 if kind == "pct" else d[value_col]
    text = [
        (
            f"{v:.1f} %".replace(".", ",")
            if kind == "pct"
            else eur_short(v)
            if kind == "eur"
            else f"{v:,.0f}".replace(",", " ")
        )
        for v in x
    ]
    fig = go.Figure(
        go.Bar(
            x=x,
            y=[_short(v, label_len) for v in d[label_col]],
            orientation="h",
            marker_color=color,
            text=text,
            textposition="auto",
            cliponaxis=False,
            customdata=d[label_col].astype(str),
            hovertemplate="%{customdata}<br>%{text}<extra></extra>",
        )
    )
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(automargin=True)
    return _layout(fig, height=height or max(240, 30 * len(d) + 60), title=title, legend=False)


def _money_scale(values) -> tuple[float, str]:
    """Divisor and unit for a money axis: M€ above a million, k€ above a thousand."""
    top = max((abs(float(v)) for v in values if pd.notna(v)), default=0.0)
    if top >= 2e6:
        return 1e6, " M€"
    if top >= 2e3:
        return 1e3, " k€"
    return 1.0, " €"


def monthly(
    df: pd.DataFrame,
    *,
    x: str = "month",
    y: str = "amount",
    previous: pd.DataFrame | None = None,
    title: str | None = None,
    label: str = "Montant payé",
) -> go.Figure:
    """Monthly bars of spend, with the same months of the previous year as a line."""
    if df is None or not len(df):
        return empty_figure("Aucune dépense sur la période.")
    d = df.copy()
    d[x] = pd.to_datetime(d[x].astype(str))
    values = list(d[y]) + (list(previous[y]) if previous is not None and len(previous) else [])
    div, unit = _money_scale(values)
    fig = go.Figure(
        go.Bar(
            x=d[x],
            y=d[y] / div,
            name=label,
            marker_color=PRIMARY,
            customdata=d[y],
            hovertemplate="%{x|%m/%Y}<br>%{customdata:,.0f} €<extra></extra>",
        )
    )
    if previous is not None and len(previous):
        p = previous.copy()
        p[x] = pd.to_datetime(p[x].astype(str)) + pd.DateOffset(years=1)
        fig.add_trace(
            go.Scatter(
                x=p[x],
                y=p[y] / div,
                name="Même mois, année précédente",
                mode="lines+markers",
                line={"color": GREY, "dash": "dot"},
                customdata=p[y],
                hovertemplate="année précédente<br>%{customdata:,.0f} €<extra></extra>",
            )
        )
    fig.update_xaxes(tickformat="%m/%Y", dtick="M1" if len(d) <= 14 else None)
    fig.update_yaxes(tickformat=",.0f", ticksuffix=unit, rangemode="tozero")
    return _layout(fig, title=title)


def share_lines(
    df: pd.DataFrame,
    x: str,
    series: dict[str, str],
    *,
    title: str | None = None,
    targets: dict[str, float] | None = None,
    height: int = 360,
) -> go.Figure:
    """Lines of shares (fractions) over ``x``: series maps column -> legend label."""
    if df is None or not len(df):
        return empty_figure("Aucune donnée pour cette sélection.")
    fig = go.Figure()
    for i, (col, label) in enumerate(series.items()):
        if col not in df:
            continue
        fig.add_trace(
            go.Scatter(
                x=df[x],
                y=pd.to_numeric(df[col], errors="coerce") * 100,
                name=label,
                mode="lines+markers",
                line={"color": PALETTE[i % len(PALETTE)], "width": 2.5},
                hovertemplate=label + " : %{y:.1f} %<extra>%{x}</extra>",
            )
        )
    for label, value in (targets or {}).items():
        fig.add_hline(
            y=value * 100,
            line_dash="dash",
            line_color=GREY,
            annotation_text=label,
            annotation_position="top left",
        )
    fig.update_yaxes(ticksuffix=" %", rangemode="tozero")
    if pd.api.types.is_numeric_dtype(df[x]):
        fig.update_xaxes(dtick=1, tickformat="d")
    return _layout(fig, title=title, height=height)


def lorenz(df: pd.DataFrame, *, x: str = "supplier_share", y: str = "spend_share") -> go.Figure:
    """Lorenz curve of spend over suppliers (both as fractions), with the equality line."""
    if df is None or not len(df):
        return empty_figure("Aucune dépense sur la période.")
    xs = [0.0] + list(pd.to_numeric(df[x]) * 100)
    ys = [0.0] + list(pd.to_numeric(df[y]) * 100)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 100],
            y=[0, 100],
            mode="lines",
            name="Répartition égale",
            line={"color": GREY, "dash": "dot"},
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines",
            name="Dépense cumulée",
            fill="tonexty",
            line={"color": PRIMARY, "width": 2.5},
            hovertemplate="%{x:.1f} % des fournisseurs<br>%{y:.1f} % de la dépense<extra></extra>",
        )
    )
    fig.update_xaxes(
        title="Part cumulée des fournisseurs (du plus petit au plus grand)", ticksuffix=" %", range=[0, 100]
    )
    fig.update_yaxes(title="Part cumulée de la dépense", ticksuffix=" %", range=[0, 100])
    return _layout(fig, height=380)


def columns(
    df: pd.DataFrame,
    x: str,
    y: str,
    *,
    kind: str = "eur",
    title: str | None = None,
    x_title: str | None = None,
    color: str = PRIMARY,
    height: int = 340,
) -> go.Figure:
    """Vertical bars in the given order (distance bands, size classes, years)."""
    if df is None or not len(df):
        return empty_figure("Aucune donnée pour cette sélection.")
    vals = pd.to_numeric(df[y], errors="coerce")
    shown = vals * 100 if kind == "pct" else vals
    text = [
        (
            f"{v:.1f} %".replace(".", ",")
            if kind == "pct"
            else eur_short(v)
            if kind == "eur"
            else f"{v:,.0f}".replace(",", " ")
        )
        if pd.notna(v)
        else ""
        for v in shown
    ]
    fig = go.Figure(
        go.Bar(
            x=df[x].astype(str),
            y=shown,
            marker_color=color,
            text=text,
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{x}<br>%{text}<extra></extra>",
        )
    )
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_xaxes(title=x_title, type="category")
    return _layout(fig, title=title, height=height, legend=False)


def stacked_share(df: pd.DataFrame, label_col: str, value_col: str, *, title: str | None = None) -> go.Figure:
    """One horizontal 100 % bar split by category (size classes, kinds)."""
    if df is None or not len(df):
        return empty_figure("Aucune donnée pour cette sélection.")
    vals = pd.to_numeric(df[value_col], errors="coerce").fillna(0)
    total = vals.sum()
    fig = go.Figure()
    for i, (lab, v) in enumerate(zip(df[label_col].astype(str), vals)):
        pct = v / total * 100 if total else 0
        fig.add_trace(
            go.Bar(
                x=[pct],
                y=[""],
                orientation="h",
                name=lab,
                marker_color=PALETTE[i % len(PALETTE)],
                text=[f"{lab} {pct:.0f} %" if pct >= 7 else ""],
                textposition="inside",
                hovertemplate=f"{lab} : {pct:.1f} %<br>{eur_short(v)}<extra></extra>".replace(".", ",", 1),
            )
        )
    fig.update_layout(barmode="stack", legend_traceorder="normal")
    fig.update_xaxes(visible=False, range=[0, 100])
    fig.update_yaxes(visible=False)
    return _layout(fig, title=title, height=150)


def trajectory(
    df: pd.DataFrame,
    *,
    year: str = "year",
    actual: str = "actual",
    target: str = "trajectory",
    label: str = "",
    final_target: float | None = None,
) -> go.Figure:
    """SPASER: actual rate by year against the trajectory towards the target."""
    if df is None or not len(df):
        return empty_figure("Aucune donnée.")
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=df[year],
            y=pd.to_numeric(df[target], errors="coerce") * 100,
            name="Trajectoire",
            mode="lines",
            line={"color": GREY, "dash": "dash"},
            hovertemplate="Trajectoire %{x} : %{y:.1f} %<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=df[year],
            y=pd.to_numeric(df[actual], errors="coerce") * 100,
            name="Réalisé",
            mode="lines+markers+text",
            line={"color": PRIMARY, "width": 3},
            text=[f"{v * 100:.1f} %".replace(".", ",") if pd.notna(v) else "" for v in df[actual]],
            textposition="top center",
            hovertemplate="Réalisé %{x} : %{y:.1f} %<extra></extra>",
        )
    )
    if final_target is not None:
        fig.add_hline(
            y=final_target * 100,
            line_color=ACCENT,
            line_dash="dot",
            annotation_text=f"Cible {final_target * 100:.0f} %".replace(".", ","),
            annotation_position="top left",
            annotation_font_color=ACCENT,
        )
    top = max([final_target or 0] + [v for v in pd.to_numeric(df[actual], errors="coerce").dropna()]) * 100
    fig.update_xaxes(dtick=1, tickformat="d")
    fig.update_yaxes(ticksuffix=" %", range=[0, top * 1.15 + 1])
    _layout(fig, title=label, height=340)
    fig.update_layout(
        margin={"t": 70 if label else 30}, legend={"orientation": "h", "y": -0.12, "yanchor": "top", "x": 0}
    )
    return fig


def figure_size(fig: go.Figure) -> int:
    """Bytes of the figure's JSON (a map over 5 MB is a bug)."""
    return len(fig.to_json())
