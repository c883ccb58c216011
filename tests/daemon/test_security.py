"""CURVE: an unauthenticated publisher cannot inject frames, an unauthenticated subscriber reads no alerts."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zmq
import zmq.auth
from gwstream.daemon.config import config_from_dict
from gwstream.daemon.errors import ConfigError
from gwstream.daemon.io.wire import decode_block_message
from gwstream.daemon.proc.security import ServerAuth, secure_client, secure_server
from gwstream.daemon.proc.spawn import free_tcp_endpoint, spawn, stop

from .streams import RATE, T0, ingest_config_dict, make_frame, write_toml


@pytest.fixture()
def keys(tmp_path):
    d = tmp_path / "keys"
    allowed = d / "allowed"
    allowed.mkdir(parents=True)
    server_pub, server_sec = zmq.auth.create_certificates(str(d), "server")
    good_pub, good_sec = zmq.auth.create_certificates(str(d), "source")
    _, bad_sec = zmq.auth.create_certificates(str(d), "stranger")
    (allowed / "source.key").write_bytes(open(good_pub, "rb").read())
    return {"server_public": server_pub, "server_secret": server_sec, "clients": str(allowed),
            "good": good_sec, "bad": bad_sec}


def endpoints_cfg(keys, client=None, **eps):
    e = {"curve_server_secret": keys["server_secret"], "curve_clients_dir": keys["clients"], **eps}
    if client:
        e.update(curve_server_public=keys["server_public"], curve_client_secret=keys[client])
    return config_from_dict({"endpoints": e}).endpoints


def test_alerts_pub_refuses_unauthenticated_subscribers(keys):
    ep = free_tcp_endpoint()
    server = endpoints_cfg(keys)
    ctx = zmq.Context()
    auth = ServerAuth(ctx, server)
    pub = ctx.socket(zmq.PUB)
    secure_server(pub, server)
    pub.bind(ep)
    subs = {}
    for who in ("good", "bad", None):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, b"alert")
        if who:
            secure_client(s, endpoints_cfg(keys, who))
        s.connect(ep)
        subs[who] = s
    try:
        got = {k: 0 for k in subs}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pub.send_multipart([b"alert", json.dumps({"event_id": "x"}).encode()])
            for k, s in subs.items():
                while s.poll(10):
                    s.recv_multipart()
                    got[k] += 1
            if got["good"] >= 3:
                break
        assert got["good"] >= 3
        assert got["bad"] == 0 and got[None] == 0
    finally:
        for s in subs.values():
            s.close(0)
        pub.close(0)
        auth.stop()
        ctx.term()


def test_ingest_accepts_frames_only_from_allowed_publishers(keys, tmp_path):
    eps = {"frames": free_tcp_endpoint(), "blocks": free_tcp_endpoint()}
    cfg_path = tmp_path / "ingest.toml"
    cfg = ingest_config_dict(**eps, curve_server_secret=keys["server_secret"], curve_clients_dir=keys["clients"])
    write_toml(cfg_path, cfg)
    ingest = spawn(["ingest", "--config", str(cfg_path)], log_path=tmp_path / "ingest.log")
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.connect(eps["blocks"])

    def publisher(who):
        s = ctx.socket(zmq.PUB)
        if who:
            secure_client(s, endpoints_cfg(keys, who))
        s.connect(eps["frames"])
        return s

    try:
        intruders = [publisher("bad"), publisher(None)]
        good = publisher("good")
        time.sleep(1.5)  # handshakes (and refusals) complete
        from gwstream.daemon.io.wire import encode_frame

        for t in range(0, 3):  # strangers first: none of this may arrive
            for s in intruders:
                for ifo in ("H1", "L1"):
                    s.send_multipart(encode_frame(make_frame(ifo, t, rate=RATE, data=np.full(RATE, 666.0))))
        time.sleep(0.5)
        for t in range(10, 13):
            for ifo in ("H1", "L1"):
                good.send_multipart(encode_frame(make_frame(ifo, t, rate=RATE, data=np.full(RATE, 1.0))))
        blocks = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(blocks) < 3:
            if pull.poll(200):
                kind, b = decode_block_message(pull.recv_multipart())
                if kind == "block":
                    blocks.append(b)
        assert [b.gps_ns // 1_000_000_000 - T0 for b in blocks] == [10, 11, 12]
        assert all((d == 1.0).all() for b in blocks for d in b.data)
    finally:
        for s in [*intruders, good]:
            s.close(0)
        pull.close(0)
        ctx.term()
        stop(ingest)


def test_missing_or_bad_key_files_are_named(tmp_path, keys):
    with pytest.raises(ConfigError, match="curve_server_secret"):
        secure_server(zmq.Context.instance().socket(zmq.PUB),
                      config_from_dict({"endpoints": {"curve_server_secret": str(tmp_path / "nope")}}).endpoints)
    with pytest.raises(ConfigError, match="secret"):
        secure_server(zmq.Context.instance().socket(zmq.PUB),
                      config_from_dict({"endpoints": {"curve_server_secret": keys["server_public"]}}).endpoints)
    with pytest.raises(ConfigError, match="curve_clients_dir"):
        ServerAuth(zmq.Context.instance(),
                   config_from_dict({"endpoints": {"curve_server_secret": keys["server_secret"]}}).endpoints)
