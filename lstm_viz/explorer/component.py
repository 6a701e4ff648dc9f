"""The explorer in the Streamlit page: a components.v2 element fed the window payload, and a small one fed the
inspected unit's terms. A UI module (imports streamlit).

The scripts it runs ship in the package and are served by this server, fetched once per page: plotly.js from
the installed plotly package and explorer.js from ./assets, through components.v1's static file route (a
declared component's directory). The element's own js is a small adapter, so a changed payload resends only
the data. Nothing comes from a CDN.
"""

from __future__ import annotations

from pathlib import Path

import plotly
import streamlit as st
import streamlit.components.v1 as components_v1

ASSETS = Path(__file__).parent / "assets"
PLOTLY_BUNDLE = Path(plotly.__file__).parent / "package_data"
EXPLORER_KEY, FOCUS_KEY = "explorer", "explorer_focus"

_ADAPTER_JS = """
const PLOTLY = "component/%(plotly)s/plotly.min.js", EXPLORER = "component/%(assets)s/explorer.js";

function script(path) {  // each script once per page, however many reruns mount the element
  const loaded = (window.__lstmVizScripts ||= {});
  const src = new URL(path, window.location.href).href;
  return loaded[src] ||= new Promise((resolve, reject) => {
    const tag = document.createElement("script");
    tag.src = src;
    tag.onload = resolve;
    tag.onerror = () => { delete loaded[src]; reject(new Error("could not load " + path)); };
    document.head.append(tag);
  });
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const hub = (window.__lstmViz ||= { explorer: null, focus: null });
  let mounted = parentElement.__lvx;
  if (!mounted) {
    mounted = parentElement.__lvx = {};
    const holder = document.createElement("div");
    parentElement.append(holder);
    mounted.ready = script(PLOTLY).then(() => script(EXPLORER)).then(() => {
      mounted.explorer = window.LstmExplorer.mount(holder, { report: (view) => mounted.send("view", view) });
      hub.explorer = mounted.explorer;
    }).catch((err) => { holder.textContent = "The explorer could not load: " + err.message; });
  }
  mounted.send = setStateValue;
  mounted.latest = data;
  mounted.ready.then(() => {
    if (!mounted.explorer) return;
    mounted.explorer.update(mounted.latest);
    if (hub.focus) mounted.explorer.focus(hub.focus);
  });
  return () => {
    if (mounted.explorer) mounted.explorer.destroy();
    if (hub.explorer === mounted.explorer) hub.explorer = null;
    delete parentElement.__lvx;
  };
}
"""

_FOCUS_JS = """
export default function ({ data }) {
  const hub = (window.__lstmViz ||= { explorer: null, focus: null });
  hub.focus = data;
  if (hub.explorer) hub.explorer.focus(data);
}
"""


def _served_name(name: str, directory: Path) -> str:
    """Declares `directory` as a component's files, so this server serves them under component/<name>/."""
    return components_v1.declare_component(name, path=str(directory)).name


_EXPLORER = None
_FOCUS = None


def _components():
    """The two elements, registered on first use (a server runtime must exist to register them)."""
    global _EXPLORER, _FOCUS
    if _EXPLORER is None:
        names = {"plotly": _served_name("plotly", PLOTLY_BUNDLE), "assets": _served_name("assets", ASSETS)}
        _EXPLORER = st.components.v2.component("lstm_viz.explorer", js=_ADAPTER_JS % names,
                                               css=(ASSETS / "explorer.css").read_text(), isolate_styles=False)
        _FOCUS = st.components.v2.component("lstm_viz.explorer_focus", js=_FOCUS_JS, isolate_styles=False)
    return _EXPLORER, _FOCUS


def mount(window: bytes, focus: dict, on_view) -> None:
    """The explorer with this window payload and unit payload. `on_view(view)` gets {t, unit, batch} whenever the
    page reports where the user stopped, clicked or needs the next window."""
    explorer, unit = _components()

    def changed() -> None:
        on_view(st.session_state[EXPLORER_KEY]["view"])

    explorer(data=window, key=EXPLORER_KEY, on_view_change=changed, height="content")
    unit(data=focus, key=FOCUS_KEY, height=0)
