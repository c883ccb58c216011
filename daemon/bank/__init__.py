"""The template bank the default network is built from, and the waveforms it is made of."""

from .templates import TemplateBank, place_bank, quadrature, whiten_templates
from .waveforms import one_waveform, template_waveform

__all__ = ["TemplateBank", "place_bank", "quadrature", "whiten_templates", "one_waveform", "template_waveform"]
