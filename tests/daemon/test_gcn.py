"""An alert as an IGWN GCN notice (daemon/io/gcn.py), and `gwstream listen --format gcn` over a real socket."""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time

import pytest
from gwstream.daemon.io.alerts import ALERT_TOPIC, SKYMAP_TOPIC, encode_alert, make_alert, make_update
from gwstream.daemon.io.gcn import EVENT_FIELDS, NOTICE_FIELDS, NoticeError, gcn_notice, validate_notice
from gwstream.daemon.io.trigger import Trigger

CREATED_NS = 1_700_000_000 * 10**9


def _alert(far=2.5e-9, template=True) -> dict:
    t = Trigger(1_000_000_074_512_500_000, 1_000_000_073_812_500_000, 38.1, 0.26, far, 12.7, False)
    tmpl = {"mass1": 36.0, "mass2": 29.0, "spin1z": 0.1, "spin2z": -0.2, "chirp_mass": 28.1} if template else None
    return make_alert(t, ifos=("H1", "L1"), background_livetime_s=4e8, n_slides=1000, model_name="factorized",
                      model_sha256="ab" * 32, latency={"frame_to_alert_s": 0.06}, created_unix_ns=CREATED_NS,
                      template=tmpl, classification={"BBH": 0.97, "Terrestrial": 0.03})


def _fits(path):
    """A small real FITS file (any FITS: the notice embeds its bytes, it does not parse them)."""
    from astropy.io import fits

    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="PROBDENSITY", format="D", array=[1.0, 2.0])])]).writeto(path)
    return path


def _update(alert, fits_path) -> dict:
    sky = {"path": str(fits_path), "area_50_deg2": 120.0, "area_90_deg2": 480.0}
    return make_update(alert, skymap=sky, template=None, created_unix_ns=CREATED_NS + 30 * 10**9)


def test_the_first_alert_maps_onto_the_notice_layout():
    alert = _alert()
    notice = gcn_notice(alert)
    assert tuple(notice) == NOTICE_FIELDS and tuple(notice["event"]) == EVENT_FIELDS
    assert notice["superevent_id"] == alert["event_id"] == "gwstream-1000000074512"
    assert notice["alert_type"] == "PRELIMINARY" and notice["time_created"] == alert["time_created"]
    ev = notice["event"]
    assert ev["time"] == alert["event"]["time"] and ev["time"].endswith("Z")
    assert ev["far"] == 2.5e-9 and ev["significant"] is True
    assert ev["instruments"] == ["H1", "L1"]
    assert (ev["group"], ev["pipeline"], ev["search"]) == ("CBC", "gwstream", "AllSky")
    assert ev["classification"] == {"BBH": 0.97, "Terrestrial": 0.03}
    assert ev["properties"] == {"HasNS": 0.0, "HasRemnant": 0.0, "HasMassGap": 0.0}
    assert ev["duration"] is None and ev["central_frequency"] is None
    assert ev["skymap"] is None  # the first alert has no sky map
    assert notice["external_coinc"] is None and notice["urls"] == {}
    json.dumps(notice, allow_nan=False)  # strict JSON
    # an alert without a template or p_astro still makes a valid notice
    bare = gcn_notice(_alert(far=1e-5, template=False))
    assert bare["event"]["properties"] is None and bare["event"]["significant"] is False


def test_the_update_embeds_the_fits_file(tmp_path):
    fits_path = _fits(tmp_path / "gwstream-1000000074512.multiorder.fits")
    notice = gcn_notice(_update(_alert(), fits_path))
    assert notice["alert_type"] == "UPDATE"
    assert base64.b64decode(notice["event"]["skymap"]) == fits_path.read_bytes()
    assert notice["urls"] == {"skymap": fits_path.resolve().as_uri()}
    # not embedded when asked not to: the URL still says where it is
    lean = gcn_notice(_update(_alert(), fits_path), embed_skymap=False)
    assert lean["event"]["skymap"] is None and lean["urls"]["skymap"].startswith("file://")


@pytest.mark.parametrize("case", ["missing", "not_fits", "directory"])
def test_an_unreadable_sky_map_gives_null_and_a_warning(tmp_path, caplog, case):
    path = tmp_path / "map.fits"
    if case == "not_fits":
        path.write_text("<html>not a sky map</html>")
    elif case == "directory":
        path.mkdir()
    with caplog.at_level(logging.WARNING, logger="gwstream.daemon.io.gcn"):
        notice = gcn_notice(_update(_alert(), path))
    assert notice["event"]["skymap"] is None
    assert any(str(path) in r.getMessage() and "not embedded" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("drop, named", [
    ("event_id", "'event_id'"), ("alert_type", "'alert_type'"), ("event", "'event'"),
    ("event.far", "'event.far'"), ("event.instruments", "'event.instruments'"),
])
def test_an_alert_missing_a_field_is_named(drop, named):
    alert = _alert()
    if "." in drop:
        del alert["event"][drop.split(".")[1]]
    else:
        del alert[drop]
    with pytest.raises(NoticeError, match=named):
        gcn_notice(alert)


@pytest.mark.parametrize("edit, named", [
    (lambda n: n.pop("superevent_id"), "'superevent_id'"),
    (lambda n: n.pop("urls"), "'urls'"),
    (lambda n: n["event"].pop("far"), "'event.far'"),
    (lambda n: n["event"].pop("skymap"), "'event.skymap'"),
    (lambda n: n["event"].update(significant="yes"), "'event.significant'"),
    (lambda n: n["event"].update(far=-1.0), "'event.far'"),
    (lambda n: n["event"].update(instruments="H1,L1"), "'event.instruments'"),
    (lambda n: n["event"].update(time=None), "'event.time' is null"),
    (lambda n: n.update(alert_type="FINAL"), "'alert_type'"),
    (lambda n: n.update(event=None), "'event' is null"),
    (lambda n: n.update(urls={"gracedb": None}), "'urls'"),
])
def test_validation_names_the_bad_field(edit, named):
    notice = gcn_notice(_alert())
    validate_notice(notice)
    edit(notice)
    with pytest.raises(NoticeError, match=named):
        validate_notice(notice)


def test_a_retraction_has_no_event():
    notice = {"superevent_id": "gwstream-1", "alert_type": "RETRACTION", "time_created": "2023-11-14T22:13:20.000Z",
              "event": None, "external_coinc": None, "urls": {}}
    validate_notice(notice)


@pytest.mark.parametrize("fmt", ["json", "gcn"])
def test_listen_prints_the_alert_then_its_follow_up(tmp_path, fmt):
    """A real publisher: one b"alert" and one b"skymap" message; `--count 2` counts both topics."""
    import zmq
    from gwstream.daemon.proc.runner import run_listen
    from gwstream.daemon.proc.spawn import free_tcp_endpoint

    alert = _alert()
    update = _update(alert, _fits(tmp_path / "map.fits"))
    ep = free_tcp_endpoint()
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)  # a PUB that sees subscriptions: publish once the listener has subscribed to both
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(ep)
    out = io.StringIO()
    stop = threading.Event()
    result = {}
    listener = threading.Thread(target=lambda: result.update(n=run_listen(
        ep, count=2, timeout_s=60, out=out, stop_event=stop, fmt=fmt)), daemon=True)
    listener.start()
    try:
        subscribed = set()
        poller = zmq.Poller()
        poller.register(pub, zmq.POLLIN)
        deadline = time.monotonic() + 30
        while subscribed != {ALERT_TOPIC, SKYMAP_TOPIC} and time.monotonic() < deadline:
            if poller.poll(200):
                msg = pub.recv()
                if msg[:1] == b"\x01":
                    subscribed.add(msg[1:])
        assert subscribed == {ALERT_TOPIC, SKYMAP_TOPIC}
        pub.send_multipart(encode_alert(alert, ALERT_TOPIC))
        pub.send_multipart(encode_alert(update, SKYMAP_TOPIC))
        listener.join(30)
        assert not listener.is_alive(), "listen did not stop after --count 2 messages"
    finally:
        stop.set()
        listener.join(5)
        pub.close(0)
        ctx.term()
    assert result["n"] == 2
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    if fmt == "json":
        assert first == alert and second == update
    else:
        validate_notice(first)
        validate_notice(second)
        assert first["superevent_id"] == second["superevent_id"] == alert["event_id"]
        assert (first["alert_type"], second["alert_type"]) == ("PRELIMINARY", "UPDATE")
        assert first["event"]["skymap"] is None
        assert base64.b64decode(second["event"]["skymap"]) == (tmp_path / "map.fits").read_bytes()


def test_listen_parser_takes_the_format():
    from gwstream.daemon.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["listen"]).format == "json"
    assert parser.parse_args(["listen", "--format", "gcn", "--count", "2"]).format == "gcn"
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["listen", "--format", "voevent"])
    assert exc.value.code == 2
