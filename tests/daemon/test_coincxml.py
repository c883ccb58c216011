"""The per-alert LIGO_LW coinc.xml reads back with igwn-ligolw and holds the alert's time and FAR."""

from gwstream.daemon.io.alerts import make_alert
from gwstream.daemon.io.coincxml import write_coinc_xml
from gwstream.daemon.stream.ranking import Trigger


def test_coinc_xml_round_trip(tmp_path):
    from igwn_ligolw import lsctables
    from igwn_ligolw import utils as ligolw_utils

    t = Trigger(1_000_000_074_512_500_000, 1_000_000_073_812_500_000, 38.1, 0.26, 2.5e-6, 12.7, True)
    alert = make_alert(t, ifos=("H1", "L1"), background_livetime_s=4e5, n_slides=1000, model_name="factorized",
                       model_sha256="ab" * 32, latency={}, created_unix_ns=1_700_000_000 * 10**9)
    path = write_coinc_xml(alert, tmp_path)
    assert path.name == f"{alert['event_id']}.xml"
    doc = ligolw_utils.load_filename(str(path))
    ci = lsctables.CoincInspiralTable.get_table(doc)
    assert len(ci) == 1
    row = ci[0]
    assert (row.end_time, row.end_time_ns) == (1_000_000_074, 512_500_000)
    assert row.combined_far == 2.5e-6 and row.ifos == "H1,L1"
    sngl = lsctables.SnglInspiralTable.get_table(doc)
    assert sorted(r.ifo for r in sngl) == ["H1", "L1"]
    coinc = lsctables.CoincTable.get_table(doc)
    assert coinc[0].likelihood == 38.1 and coinc[0].nevents == 2
    assert len(lsctables.CoincMapTable.get_table(doc)) == 2
