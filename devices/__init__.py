"""Simulated bedside monitors, a load generator and a replay publisher for streamproc.

Shares only the wire contract with ``streamproc`` (its timestamps, errors and, in the tests,
its codec); never imports the evaluator. A map of the package:

    physiology   the patient model; every parameter in physiology.toml, with its source
    scenario     scenarios as data (scenarios/*.toml): context, events, faults, expected alerts
    faults       artefacts (flush, zeroing, disconnect, probe off) and message faults
    bedside      one bed: patient + monitor + chart → the bed's wire messages, seeded
    simulate     a ward on a (compressed) timeline → MQTT, or JSON Lines offline
    expectations a run's alerts against its scenarios' expectations
    publisher    the MQTT edge: TCP_NODELAY clients and pipelined QoS 1 publishing
    loadtest     a rate of readings at a running streamproc; throughput, latency, loss
    listener     the load test's alert consumer, in its own process
    replay       publish a recording as monitors would (``python -m devices replay``)
    cli          ``python -m devices``
"""

__all__: list[str] = []
