"""streamproc: real-time evaluation of septic-shock protocol targets over MQTT.

A secondary alerting system: it never replaces the bedside monitor's own alarms.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
