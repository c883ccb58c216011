"""``gwstream skymap``: draw an alert's sky map (Mollweide PNG, 50%/90% credible contours);
``gwstream localize``: BAYESTAR sky maps of coinc.xml files (``gwstream search --followup``'s)."""

from __future__ import annotations

import json
from pathlib import Path


def cmd_skymap(args) -> int:
    from gwstream.daemon.followup.plot import SkymapError, is_fits, plot_skymap, skymap_of_alerts

    src = Path(args.skymap)
    if not src.is_file():
        raise SkymapError(f"SKYMAP {args.skymap!r}: no such file (a multi-order FITS sky map or an alerts file)")
    if args.true is not None:
        ra, dec = args.true
        if not (0.0 <= ra <= 360.0 and -90.0 <= dec <= 90.0):
            raise SkymapError(f"--true {ra:g} {dec:g}: expected RA in [0, 360] and DEC in [-90, 90] degrees")
    event_id = args.event_id
    if is_fits(src):
        fits = src
    else:
        fits, alert = skymap_of_alerts(src, args.event_id)
        event_id = alert["event_id"]
    name = fits.name
    for suffix in (".gz", ".fits", ".multiorder"):
        name = name.removesuffix(suffix)
    png = Path(args.output) if args.output else fits.parent / f"{name}.png"
    summary = plot_skymap(fits, png, event_id=event_id, true_radec=tuple(args.true) if args.true else None)
    print(json.dumps(summary))
    return 0


def cmd_localize(args) -> int:
    from gwstream.daemon.followup.localize import localize_coinc
    from gwstream.daemon.followup.snr import FollowupError

    failed = 0
    for xml in args.coinc:
        xml = Path(xml)
        out = Path(args.out_dir) if args.out_dir else xml.parent
        name = xml.name.removesuffix(".gz").removesuffix(".xml")
        try:
            res = localize_coinc(xml, out / f"{name}.multiorder.fits", event_id=name)
        except FollowupError as exc:
            failed += 1
            print(json.dumps({"coinc": str(xml), "error": str(exc)}))
            continue
        print(json.dumps({"coinc": str(xml)} | res.as_dict()))
    return 1 if failed else 0


def register(sub) -> None:
    """Add this module's commands to the ``gwstream`` sub-command parser."""
    p = sub.add_parser("skymap", help="draw an alert's sky map: Mollweide PNG with 50%%/90%% credible contours")
    p.add_argument("skymap", metavar="SKYMAP",
                   help="multi-order FITS sky map, or an alerts file (JSON lines, e.g. out/online/alerts.jsonl)")
    p.add_argument("-o", "--output", default=None, metavar="PNG",
                   help="PNG to write (default: beside the sky map, <name>.png)")
    p.add_argument("--event-id", default=None,
                   help="with an alerts file: the event whose sky map to draw (default: the last alert with one); "
                        "with a FITS file: the title")
    p.add_argument("--true", nargs=2, type=float, default=None, metavar=("RA", "DEC"),
                   help="mark a known position (degrees)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_skymap)

    p = sub.add_parser("localize", help="BAYESTAR sky map (multi-order FITS) of coinc.xml files with SNR series "
                                        "and PSDs (gwstream search --followup)")
    p.add_argument("coinc", nargs="+", metavar="COINC_XML")
    p.add_argument("--out-dir", default=None, help="where the sky maps go (default: beside each coinc.xml)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_localize)
