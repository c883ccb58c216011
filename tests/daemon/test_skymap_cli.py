"""`gwstream skymap`: a multi-order FITS sky map (or an alerts file's) drawn as a Mollweide PNG."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from gwstream.daemon.cli.main import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIGMA_DEG = 5.0
#: a 2-d Gaussian's credible areas: 2 pi sigma^2 ln(1 / (1 - p))
AREA_50 = 2 * math.pi * SIGMA_DEG**2 * math.log(2.0)
AREA_90 = 2 * math.pi * SIGMA_DEG**2 * math.log(10.0)


def write_blob(path, ra_deg=120.0, dec_deg=-30.0, order=6, objid="gwstream-1000000074512"):
    """A Gaussian blob (sigma 5 deg) on a nside-64 grid, written as a multi-order (NUNIQ) FITS sky map."""
    import healpy as hp
    from astropy.table import Table
    from ligo.skymap.io.fits import write_sky_map
    from ligo.skymap.moc import nest2uniq

    nside = 2**order
    ipix = np.arange(hp.nside2npix(nside))
    vec = np.array(hp.pix2vec(nside, ipix, nest=True)).T
    center = hp.ang2vec(math.radians(90.0 - dec_deg), math.radians(ra_deg))
    dist = np.arccos(np.clip(vec @ center, -1.0, 1.0))
    prob = np.exp(-0.5 * (dist / math.radians(SIGMA_DEG)) ** 2)
    prob /= prob.sum()
    table = Table([nest2uniq(np.int8(order), ipix), prob / hp.nside2pixarea(nside)], names=["UNIQ", "PROBDENSITY"])
    write_sky_map(str(path), table, objid=objid, gps_time=1_000_000_074.5125)
    return path


@pytest.fixture(scope="module")
def blob(tmp_path_factory):
    return write_blob(tmp_path_factory.mktemp("sky") / "gwstream-1000000074512.multiorder.fits")


def _summary(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000


def test_a_fits_sky_map_becomes_a_png_with_its_areas(blob, tmp_path, capsys):
    png = tmp_path / "sub" / "map.png"
    assert main(["skymap", str(blob), "-o", str(png), "--true", "120", "-30"]) == 0
    s = _summary(capsys)
    assert _is_png(png) and s["png"] == str(png)
    assert s["event_id"] == "gwstream-1000000074512"  # the map's OBJECT
    assert s["area_50_deg2"] == pytest.approx(AREA_50, rel=0.05)
    assert s["area_90_deg2"] == pytest.approx(AREA_90, rel=0.05)


def test_the_default_png_lies_beside_the_sky_map(tmp_path, capsys):
    fits = write_blob(tmp_path / "ev.multiorder.fits", ra_deg=300.0, dec_deg=45.0)
    assert main(["skymap", str(fits), "--event-id", "my-event"]) == 0
    s = _summary(capsys)
    assert s["png"] == str(tmp_path / "ev.png") and _is_png(tmp_path / "ev.png")
    assert s["event_id"] == "my-event"


def test_an_alerts_file_gives_the_sky_map_of_an_event(blob, tmp_path, capsys):
    alerts = tmp_path / "alerts.jsonl"
    lines = [
        {"event_id": "gwstream-1", "alert_type": "PRELIMINARY", "skymap": None},
        {"event_id": "gwstream-1", "alert_type": "UPDATE",
         "skymap": {"path": str(blob), "area_50_deg2": 109.0, "area_90_deg2": 362.0}},
        {"event_id": "gwstream-2", "alert_type": "PRELIMINARY", "skymap": None},
    ]
    alerts.write_text("\n".join(json.dumps(x) for x in lines) + "\n{\"event_id\": \"half-writ")
    png = tmp_path / "one.png"
    assert main(["skymap", str(alerts), "--event-id", "gwstream-1", "-o", str(png)]) == 0
    s = _summary(capsys)
    assert _is_png(png) and s["event_id"] == "gwstream-1" and s["skymap"] == str(blob.resolve())
    # without --event-id: the last alert that has a sky map (gwstream-2 has none yet)
    from gwstream.daemon.followup.plot import skymap_of_alerts

    path, alert = skymap_of_alerts(alerts)
    assert path == blob and alert["alert_type"] == "UPDATE" and alert["event_id"] == "gwstream-1"
    # errors name what is missing, exit 2, no traceback
    assert main(["skymap", str(alerts), "--event-id", "gwstream-2"]) == 2
    err = capsys.readouterr().err
    assert "alert 'gwstream-2'" in err and "has no sky map" in err
    assert main(["skymap", str(alerts), "--event-id", "gwstream-9"]) == 2
    assert "holds no alert 'gwstream-9'" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "not_a_sky_map", "alert_names_a_missing_map", "bad_true"])
def test_bad_input_is_a_clear_error(tmp_path, blob, capsys, case):
    args = ["skymap"]
    if case == "missing":
        args.append(str(tmp_path / "nowhere.fits"))
        expected = "no such file"
    elif case == "not_a_sky_map":
        (tmp_path / "bad.fits").write_bytes(b"SIMPLE  =                    T" + b" " * 50)
        args.append(str(tmp_path / "bad.fits"))
        expected = "not a HEALPix FITS sky map"
    elif case == "alert_names_a_missing_map":
        (tmp_path / "alerts.jsonl").write_text(json.dumps(
            {"event_id": "gwstream-3", "skymap": {"path": str(tmp_path / "gone.fits")}}) + "\n")
        args.append(str(tmp_path / "alerts.jsonl"))
        expected = "gone.fits"
    else:
        args += [str(blob), "--true", "400", "0"]
        expected = "--true"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("gwstream skymap: error:") and expected in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.png"))
