"""Plans for a day, not a moment: time-varying load, scaling lag and autoscaling.

* :mod:`planner.day.profile`: load profiles (named shapes, tables of periods, request traces
  binned into periods with their burstiness measured);
* :mod:`planner.day.schedule`: one optimizer search per distinct period, the schedule of pool
  sizes under the scaling constraints, GPU-hours and cost against static peak provisioning,
  and the attainment of every period with the scale-up lag;
* :mod:`planner.day.autoscale`: thresholds on observable signals that reproduce the schedule,
  and the KEDA ScaledObjects the exporters write;
* :mod:`planner.day.simulate`: the day through the discrete-event simulator, instances added
  and removed as the schedule says;
* :mod:`planner.day.document`: the plan document's ``day`` section, both ways;
* tables and charts in :mod:`planner.render.day`; the commands' options in :mod:`planner.cli.day`.

The facade is :mod:`planner.api` (``load_profile``, ``plan_day``, ``evaluate_day``,
``simulate_day``, ``whatif_day``). docs/day.md says what the model assumes.
"""
