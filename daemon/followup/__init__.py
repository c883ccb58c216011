"""What an alert carries beyond its time and FAR: the template, its SNR series, p_astro, the sky map.

``snr`` places the template and computes each detector's complex SNR series
around a trigger; ``coinc`` writes them with the PSDs as the coinc.xml
BAYESTAR and GraceDB read; ``localize`` runs BAYESTAR on it; ``pastro`` is the
two-component p_astro model. The processes that run them are in
:mod:`gwstream.daemon.proc` (the search process and its follow-up worker).
"""
