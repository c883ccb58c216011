"""The follow-up of one trigger: its template, SNR series, coinc.xml and sky map, from its snapshot.

:class:`Followup` is what the follow-up worker process
(:mod:`gwstream.daemon.proc.followup_worker`) and ``gwstream search
--followup`` run on each :class:`~gwstream.daemon.stream.snapshot.TriggerSnapshot`:
:func:`~gwstream.daemon.followup.snr.template_snr`, then the coinc.xml with
the SNR series and PSDs (:func:`gwstream.daemon.io.coincxml.write_coinc_xml`),
then BAYESTAR (:func:`~gwstream.daemon.followup.localize.localize_coinc`).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from gwstream.daemon.config import Config
from gwstream.daemon.io.alerts import make_alert
from gwstream.daemon.io.coincxml import write_coinc_xml
from gwstream.daemon.io.trigger import Trigger
from gwstream.daemon.stream.background import far_to_ifar_years

from .snr import FollowupError, TemplateBankParams, TemplateSNR, template_record, template_snr

__all__ = ["Followup", "FollowupResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FollowupResult:
    """What the follow-up of one alert made."""

    event_id: str
    template: dict
    snr: TemplateSNR
    coinc_path: Path
    skymap: dict | None
    error: str | None = None


class Followup:
    """Template SNR series, coinc.xml and sky map of triggers, with one bank.

    Parameters
    ----------
    bank : TemplateBankParams
    branch_pairs : int
        The model's template-branch pairs (0: none). The branch's template
        ``k`` is the bank's row ``k`` only when the bank has exactly that many
        rows; otherwise every template of the bank is filtered.
    neighbours : int
    skymap : bool
        Run BAYESTAR after writing the coinc.xml.
    """

    def __init__(self, bank: TemplateBankParams, *, branch_pairs: int = 0, neighbours: int = 32, skymap: bool = True):
        self.bank = bank
        self.branch_maps = bool(branch_pairs) and branch_pairs == len(bank)
        if branch_pairs and not self.branch_maps:
            log.warning("the model's template branch has %d templates, the follow-up bank %s has %d: the branch's "
                        "template cannot name a bank row, the follow-up filters with the whole bank", branch_pairs,
                        bank.path, len(bank))
        self.neighbours = int(neighbours)
        self.skymap = bool(skymap)

    @classmethod
    def from_config(cls, cfg: Config, model=None) -> Followup:
        """The follow-up of ``cfg.followup`` for a model (its branch size from ``model.template_pairs``)."""
        from gwstream.models import default_bank_path

        f = cfg.followup
        path = f.template_bank or default_bank_path()
        return cls(TemplateBankParams(path), branch_pairs=int(getattr(model, "template_pairs", 0) or 0),
                   neighbours=f.neighbours, skymap=f.skymap)

    def branch_template(self, index: int | None, branch_snr: float | None = None) -> dict | None:
        """The alert's ``template`` from the branch's template index alone (no SNR series yet), or None."""
        if index is None or not self.branch_maps or not 0 <= index < len(self.bank):
            return None
        return template_record(self.bank.row(int(index)), branch_snr=branch_snr) | {"source": "template_branch"}

    def place(self, snap) -> TemplateSNR:
        """The template and SNR series of a snapshot (FollowupError when they cannot be made)."""
        if not self.branch_maps and snap.template_index is not None:
            snap = _without_index(snap)
        return template_snr(snap, self.bank, neighbours=self.neighbours)

    def run(self, snap, alert: dict, out_dir: str | Path) -> FollowupResult:
        """Template, coinc.xml (``<out_dir>/<event_id>.xml``) and sky map (``<event_id>.multiorder.fits``)."""
        out_dir = Path(out_dir)
        snr = self.place(snap)
        template = template_record(snr.params, snr, branch_snr=snap.template_snr)
        xml = write_coinc_xml(alert, out_dir, template=snr.params, detectors=snr.detectors, psds=snap.psds)
        skymap, error = None, None
        if self.skymap:
            from .localize import localize_coinc

            try:
                skymap = localize_coinc(xml, out_dir / f"{alert['event_id']}.multiorder.fits",
                                        event_id=alert["event_id"]).as_dict()
            except FollowupError as exc:
                error = str(exc)
                log.error("sky map of %s: %s", alert["event_id"], exc)
        return FollowupResult(alert["event_id"], template, snr, xml, skymap, error)

    def write_coinc(self, snap, out_dir: str | Path, *, ifos, model_name: str, model_sha256: str | None,
                    counters: Counter | None = None) -> Path | None:
        """Offline (``gwstream search --followup``): the coinc.xml of a snapshot's trigger, no sky map."""
        trig = Trigger(snap.gps_ns, snap.gps_ns, snap.stat, 0.0, snap.far, float(far_to_ifar_years(snap.far)), False)
        alert = make_alert(trig, ifos=ifos, background_livetime_s=0.0, n_slides=0, model_name=model_name,
                           model_sha256=model_sha256, latency={}, created_unix_ns=0)
        alert["event_id"] = snap.event_id
        try:
            snr = self.place(snap)
        except FollowupError as exc:
            if counters is not None:
                counters["followup_errors"] += 1
            log.warning("follow-up of %s: %s", snap.event_id, exc)
            return None
        if counters is not None:
            counters["followups"] += 1
        return write_coinc_xml(alert, out_dir, template=snr.params, detectors=snr.detectors, psds=snap.psds)


def _without_index(snap):
    import dataclasses

    return dataclasses.replace(snap, template_index=None)
