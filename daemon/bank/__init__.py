"""The template bank the default network is built from, and the waveforms it is made of."""

from .templates import TemplateBank, load_template_params, place_bank, quadrature, whiten_templates
from .waveforms import one_waveform, template_waveform

__all__ = ["TemplateBank", "load_template_params", "place_bank", "quadrature", "whiten_templates", "one_waveform", "template_waveform"]
