"""River-based online anomaly detectors and forecasters. No I/O.

Every estimator follows River's protocol: ``learn_one`` to update, and
``score_one`` (detectors, a score in [0, 1]) or ``forecast(horizon)``
(forecasters, point forecasts with prediction intervals). All are picklable
and usable offline on a plain list of floats.
"""
