"""Wire format: round trips, zero-copy decode, every malformed message named by reason."""

import json

import numpy as np
import pytest
from gwstream.daemon.errors import WireError
from gwstream.daemon.io.wire import (
    Block,
    Frame,
    decode_block_message,
    decode_source_message,
    encode_block,
    encode_control,
    encode_eos,
    encode_frame,
)
from gwstream.daemon.units import NS
from hypothesis import given, settings
from hypothesis import strategies as st


def _frame(dtype="<f8", n=16384, state=(3,), seed=0):
    rng = np.random.default_rng(seed)
    return Frame("H1", "H1:GDS-CALIB_STRAIN", 1_000_000_000 * NS, 16384,
                 rng.normal(size=n).astype(dtype), state, 7)


@pytest.mark.parametrize("dtype", ["<f4", "<f8"])
def test_frame_round_trip(dtype):
    frame = _frame(dtype)
    parts = encode_frame(frame)
    assert parts[0] == b"frame.H1"
    header = json.loads(parts[1])
    assert header == {"v": 1, "ifo": "H1", "channel": "H1:GDS-CALIB_STRAIN", "gps_ns": frame.gps_ns,
                      "sample_rate": 16384, "n": 16384, "dtype": dtype, "state": 3, "seq": 7}
    back = decode_source_message(parts)
    assert back.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.data, frame.data)
    assert (back.ifo, back.gps_ns, back.sample_rate, back.state, back.seq) == ("H1", frame.gps_ns, 16384, (3,), 7)
    assert back.end_ns == frame.gps_ns + NS


def test_decode_is_zero_copy():
    parts = encode_frame(_frame())
    payload = bytearray(parts[2])
    back = decode_source_message([parts[0], parts[1], memoryview(payload)])
    payload[:8] = np.float64(42.0).tobytes()
    assert back.data[0] == 42.0


def test_state_list_spans_frame():
    frame = _frame(state=tuple([3] * 8 + [1] * 8))
    back = decode_source_message(encode_frame(frame))
    per_sample = back.state_per_sample()
    assert per_sample.shape == (16384,)
    assert (per_sample[:8192] == 3).all() and (per_sample[8192:] == 1).all()


def test_eos_round_trip():
    assert decode_source_message(encode_eos("L1", 12)) == ("eos", "L1", 12)


def _with_header(**changes):
    parts = encode_frame(_frame())
    header = json.loads(parts[1])
    for k, v in changes.items():
        if v is KeyError:
            header.pop(k)
        else:
            header[k] = v
    return [parts[0], json.dumps(header).encode(), parts[2]]


@pytest.mark.parametrize(
    "parts, reason",
    [
        ([], "bad_parts"),
        ([b"frame.H1", b"{}"], "bad_parts"),
        ([b"hello", b"{}", b""], "bad_topic"),
        ([b"frame.H1", b"not json", b""], "bad_json"),
        ([b"frame.H1", b"\xff\xfe", b""], "bad_json"),
        ([b"frame.H1", b"[1, 2]", b""], "bad_json"),
        (_with_header(v=2), "bad_version"),
        (_with_header(v="1"), "bad_type"),
        (_with_header(n=KeyError), "missing_field"),
        (_with_header(gps_ns=1.5e18), "bad_type"),
        (_with_header(sample_rate="16384"), "bad_type"),
        (_with_header(seq=True), "bad_type"),
        (_with_header(dtype="<i4"), "bad_dtype"),
        (_with_header(dtype=">f8"), "bad_dtype"),
        (_with_header(sample_rate=0), "bad_sample_rate"),
        (_with_header(sample_rate=10**7), "bad_sample_rate"),
        (_with_header(n=16320), "bad_length"),
        (_with_header(n=-1), "bad_value"),
        (_with_header(n=3, sample_rate=7), "bad_value"),
        (_with_header(gps_ns=-5), "bad_value"),
        (_with_header(seq=-1), "bad_value"),
        (_with_header(seq=2**70), "bad_value"),
        (_with_header(state=-1), "bad_value"),
        (_with_header(state=[]), "bad_value"),
        (_with_header(state=[3, 3, 3]), "bad_value"),
        (_with_header(ifo="L1"), "topic_mismatch"),
        (_with_header(channel="L1:GDS-CALIB_STRAIN"), "bad_value"),
        ([b"eos.H1", b'{"v": 1, "ifo": "L1", "seq": 0}'], "topic_mismatch"),
        ([b"eos.H1", b"{}", b""], "bad_parts"),
    ],
)
def test_malformed_messages_are_named(parts, reason):
    with pytest.raises(WireError) as info:
        decode_source_message(parts)
    assert info.value.reason == reason


def test_oversize_rejected_before_parsing():
    with pytest.raises(WireError) as info:
        decode_source_message([b"frame.H1", b"x", b"\0" * 2048], max_bytes=1024)
    assert info.value.reason == "oversize"
    assert "1024" in str(info.value)


def test_nonfinite_samples_are_data_not_wire_errors():
    frame = _frame()
    data = frame.data.copy()
    data[10:20] = np.nan
    back = decode_source_message(encode_frame(Frame("H1", frame.channel, frame.gps_ns, 16384, data)))
    assert np.isnan(back.data[10:20]).all()


def test_block_round_trip():
    rng = np.random.default_rng(3)
    valid = (rng.random(2048) > 0.1, np.ones(16384, bool))
    block = Block(5 * NS, NS, ("H1", "L1"), (2048, 16384),
                  (rng.normal(size=2048), rng.normal(size=16384)), valid, 9)
    kind, back = decode_block_message(encode_block(block))
    assert kind == "block"
    assert (back.gps_ns, back.duration_ns, back.ifos, back.sample_rates, back.seq) == (
        5 * NS, NS, ("H1", "L1"), (2048, 16384), 9)
    for a, b in zip(back.data, block.data):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(back.valid, block.valid):
        np.testing.assert_array_equal(a, b)
    assert decode_block_message(encode_control("gap", {"gps_ns": 1, "end_ns": 2}))[1]["end_ns"] == 2


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=5))
def test_random_bytes_only_ever_raise_wire_error(parts):
    try:
        decode_source_message(parts, max_bytes=1024)
    except WireError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "ifo", "channel", "gps_ns", "sample_rate", "n", "dtype",
                                        "state", "seq"]),
                       st.one_of(st.integers(-2**70, 2**70), st.floats(), st.text(max_size=8), st.booleans(),
                                 st.none(), st.lists(st.integers(-5, 2**33), max_size=4))),
       st.binary(max_size=256))
def test_type_confused_headers_only_ever_raise_wire_error(header, payload):
    try:
        decode_source_message([b"frame.H1", json.dumps(header).encode(), payload])
    except WireError:
        pass
