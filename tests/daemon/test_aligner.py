"""Ingest alignment, step by step on a simulated clock: the scripted messy stream and edge cases."""

import numpy as np
from gwstream.daemon.config import config_from_dict
from gwstream.daemon.io.wire import Block, encode_frame
from gwstream.daemon.proc.ingest import IngestStage
from gwstream.daemon.stream.aligner import Aligner, EndOfStream, Gap

from tests.daemon.streams import NS, RATE, T0, ingest_config_dict, make_frame


def _stage(**over):
    cfg = config_from_dict(ingest_config_dict(), over)
    return IngestStage(Aligner.from_config(cfg), cfg.ingest.max_message_bytes)


def _run(stage, messages, step_ns=NS // 100):
    now, out = 0, []
    for msg in messages:
        if isinstance(msg, tuple):
            now += int(msg[1] * NS)
            out += stage.poll(now)
            continue
        now += step_ns
        out += stage.handle(msg, now)
    return out


def test_messy_stream_gives_exact_blocks_and_counters(messy_script):
    stage = _stage()
    out = _run(stage, messy_script.messages)
    blocks = [o for o in out if isinstance(o, Block)]
    assert isinstance(out[-1], EndOfStream)
    assert not [o for o in out if isinstance(o, Gap)]
    assert [b.gps_ns for b in blocks] == [(T0 + t) * NS for t in range(messy_script.n_blocks)]
    for b in blocks:
        t = b.gps_ns // NS - T0
        assert b.ifos == ("H1", "L1") and b.sample_rates == (RATE, RATE)
        for ifo, data, valid in zip(b.ifos, b.data, b.valid):
            np.testing.assert_array_equal(valid, messy_script.expected_valid[ifo, t], err_msg=f"{ifo} {t}")
            np.testing.assert_array_equal(data, messy_script.expected_data[ifo, t], err_msg=f"{ifo} {t}")
    counters = {k: v for k, v in stage.counters.items() if not k.startswith(("out_of_order", "messages"))}
    assert counters == messy_script.expected_counters
    assert stage.counters["messages"] == len([m for m in messy_script.messages if not isinstance(m, tuple)])


def test_block_waits_for_late_detector_until_timeout():
    stage = _stage()
    out = stage.handle(encode_frame(make_frame("H1", 0)), 0)
    out += stage.handle(encode_frame(make_frame("H1", 1)), 1)
    assert out == []  # L1 not heard from yet: nothing can be aligned
    out = stage.poll(NS - 1)
    assert out == []
    out = stage.poll(NS)  # 1 s (the timeout) after H1's first frame arrived
    out += stage.poll(NS + 1)  # ... and after its second
    assert [o.gps_ns // NS - T0 for o in out] == [0, 1]
    assert all(not o.valid[1].any() for o in out)


def test_detector_arriving_second_is_not_cut_off():
    stage = _stage()
    stage.handle(encode_frame(make_frame("H1", 1)), 0)
    out = stage.handle(encode_frame(make_frame("L1", 0)), 10)
    out += stage.handle(encode_frame(make_frame("H1", 0)), 20)
    out += stage.handle(encode_frame(make_frame("L1", 1)), 30)
    assert [o.gps_ns // NS - T0 for o in out] == [0, 1]
    assert all(v.all() for o in out for v in o.valid)


def test_total_outage_becomes_one_gap():
    stage = _stage()
    out = []
    for t in (0, 1):
        out += stage.handle(encode_frame(make_frame("H1", t)), t)
        out += stage.handle(encode_frame(make_frame("L1", t)), t)
    for t in (5, 6):  # 2..4 never come, from anyone
        out += stage.handle(encode_frame(make_frame("H1", t)), 10 + t)
        out += stage.handle(encode_frame(make_frame("L1", t)), 10 + t)
    out += stage.poll(5 * NS)
    kinds = [(type(o).__name__, o.gps_ns // NS - T0) for o in out]
    assert kinds == [("Block", 0), ("Block", 1), ("Gap", 2), ("Block", 5), ("Block", 6)]
    assert out[2].end_ns == (T0 + 5) * NS
    assert stage.counters["gaps"] == 1


def test_detector_running_ahead_is_bounded_by_the_buffer():
    stage = _stage()  # buffer 8 s
    out = []
    for t in range(20):
        out += stage.handle(encode_frame(make_frame("H1", t)), t)
    assert stage.counters["forced_by_buffer"] > 0
    assert [o.gps_ns // NS - T0 for o in out] == list(range(len(out)))
    assert 20 - len(out) <= 8


def test_longer_frames_are_cut_into_blocks():
    stage = _stage()
    for ifo in ("H1", "L1"):
        data = np.concatenate([make_frame(ifo, t).data for t in range(4)])
        frame = make_frame(ifo, 0, data=data)
        out = stage.handle(encode_frame(frame), 0)
    assert [o.gps_ns // NS - T0 for o in out] == [0, 1, 2, 3]
    np.testing.assert_array_equal(out[2].data[1], make_frame("L1", 2).data)


def test_misaligned_frame_rejected():
    stage = _stage()
    frame = make_frame("H1", 0)
    shifted = type(frame)(frame.ifo, frame.channel, frame.gps_ns + 1000, RATE, frame.data, (3,), 0)
    assert stage.handle(encode_frame(shifted), 0) == []
    assert stage.counters["rejected.misaligned"] == 1


def test_wrong_channel_rejected():
    stage = _stage()
    frame = make_frame("H1", 0)
    other = type(frame)("H1", "H1:GDS-CALIB_STRAIN_CLEAN", frame.gps_ns, RATE, frame.data, (3,), 0)
    stage.handle(encode_frame(other), 0)
    assert stage.counters["rejected.bad_channel"] == 1


def test_state_words_gate_parts_of_a_frame():
    stage = _stage()
    state = tuple([3] * 8 + [2] * 8)  # second half: HOFT not OK
    f = make_frame("H1", 0)
    out = stage.handle(encode_frame(type(f)("H1", f.channel, f.gps_ns, RATE, f.data, state, 0)), 0)
    out += stage.handle(encode_frame(make_frame("L1", 0)), 0)
    (block,) = out
    assert block.valid[0][: RATE // 2].all() and not block.valid[0][RATE // 2:].any()


def test_new_stream_after_end_of_stream_waits_for_every_detector():
    stage = _stage()
    out = []
    for t in (0, 1):
        out += stage.handle(encode_frame(make_frame("H1", t)), 0)
        out += stage.handle(encode_frame(make_frame("L1", t)), 0)
    out += stage.handle([b"eos.H1", b'{"v": 1, "ifo": "H1", "seq": 2}'], 0)
    out += stage.handle([b"eos.L1", b'{"v": 1, "ifo": "L1", "seq": 2}'], 0)
    assert isinstance(out[-1], EndOfStream)
    # the source comes back 8 s later: the silence is one gap, and H1's frame must not go out alone
    after = stage.handle(encode_frame(make_frame("H1", 10)), 10)
    assert [(type(o).__name__, o.gps_ns // NS - T0, o.end_ns // NS - T0) for o in after] == [("Gap", 2, 10)]
    after = stage.handle(encode_frame(make_frame("L1", 10)), 10)
    assert [type(o).__name__ for o in after] == ["Block"] and all(v.all() for v in after[0].valid)
