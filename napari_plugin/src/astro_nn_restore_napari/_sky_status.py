"""Sky coordinates of the cursor in napari's status bar.

napari writes ``viewer.status`` (pixel coordinates and value of the active
layer) when the cursor moves (computed in a status thread in the Qt viewer);
the callback installed here listens to ``viewer.events.status`` and appends
the sky position from the active layer's ``metadata["wcs"]``, for example
``[255 310]: 131.2 | RA 16:02:09.86 Dec +45:08:41.5 (ICRS)``.

It is installed (once per viewer) by the plugin's reader, sample data and
widgets, as napari has no "plugin loaded" hook.
"""

import weakref

import numpy as np

__all__ = ["install_sky_status", "sky_text"]

_installed = {}  # id(viewer) -> weakref to the viewer


def install_sky_status(viewer):
    """Append the cursor's sky coordinates to ``viewer.status`` (idempotent)."""
    if viewer is None:
        return
    viewer = getattr(viewer, "__wrapped__", viewer)  # the proxy napari gives plugin widgets
    ref = _installed.get(id(viewer))
    if ref is not None and ref() is viewer:
        return
    _installed[id(viewer)] = weakref.ref(viewer)
    viewer_ref = weakref.ref(viewer)

    def on_status(event=None):
        current = viewer_ref()
        if current is not None:
            _update_status(current)

    # setting the status from here emits again; the second call finds the text already there
    viewer.events.status.connect(on_status, position="last")


def install_in_current_viewer():
    """`install_sky_status` on napari's current viewer, if there is one."""
    try:
        from napari import current_viewer
    except ImportError:  # pragma: no cover - napari is a dependency
        return
    install_sky_status(current_viewer())


def sky_text(wcs, x, y):
    """Sky position of pixel (x, y) (0-based) as text, or '' when unknown."""
    if wcs is None or not getattr(wcs, "has_celestial", False):
        return ""
    celestial = wcs.celestial
    try:
        lon, lat = (float(v) for v in celestial.pixel_to_world_values(x, y))
    except Exception:  # outside the projection's domain, or a broken WCS
        return ""
    if not (np.isfinite(lon) and np.isfinite(lat)):
        return ""
    frame = (celestial.wcs.radesys or "").strip()
    ctype = celestial.wcs.ctype[0].upper()
    if ctype.startswith("RA"):
        from astropy.coordinates import Angle

        ra = Angle(lon % 360, "deg").to_string(unit="hourangle", sep=":", precision=2, pad=True)
        dec = Angle(lat, "deg").to_string(unit="deg", sep=":", precision=1, alwayssign=True,
                                          pad=True)
        return f"RA {ra} Dec {dec}" + (f" ({frame})" if frame else "")
    names = {"GL": ("l", "b"), "EL": ("elon", "elat"), "SL": ("sgl", "sgb")}
    lon_name, lat_name = names.get(ctype[:2], ("lon", "lat"))
    return f"{lon_name} {lon % 360:.5f}° {lat_name} {lat:+.5f}°"


def _cursor_pixel(viewer, layer):
    """(x, y) data pixel of the cursor in ``layer``, or None outside the image."""
    position = layer.world_to_data(viewer.cursor.position)
    y, x = float(position[-2]), float(position[-1])
    ny, nx = layer.data.shape[-3:-1] if layer.rgb else layer.data.shape[-2:]
    if not (-0.5 <= x < nx - 0.5 and -0.5 <= y < ny - 0.5):
        return None
    return x, y


def _update_status(viewer):
    from napari.layers import Image

    layer = viewer.layers.selection.active
    # only images: a Points layer (anomaly scores) carries its image's WCS too,
    # but its data are coordinates, not a pixel grid
    if not isinstance(layer, Image) or layer.multiscale or not viewer.mouse_over_canvas:
        return
    wcs = layer.metadata.get("wcs")
    if wcs is None:
        return
    pixel = _cursor_pixel(viewer, layer)
    text = sky_text(wcs, *pixel) if pixel is not None else ""
    if not text:
        return
    status = viewer.status
    unit = layer.metadata.get("unit") or ""
    if isinstance(status, dict):
        base = status.get("coordinates", "")
        if text in base:
            return
        if unit and status.get("value"):
            base = f"{base} {unit}"  # "[y, x]: value" -> "[y, x]: value electron"
        viewer.status = {**status, "coordinates": f"{base} | {text}" if base else text}
    elif text not in status:
        viewer.status = f"{status} | {text}"
