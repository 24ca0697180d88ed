"""The retraining criteria as one pure function: a model's state and what was just observed -> its next state and
what to do. No clock, no I/O: the watcher gathers the observation, calls `judge`, and acts on the decision.

    drift      the drift verdict is "alert" on `drift_windows` CONSECUTIVE, NON-OVERLAPPING windows (each window
               may false-alarm in up to ~5% of cases, calibrated; two in a row in ~0.25%).
    accuracy   the live accuracy on labelled feedback is more than `accuracy_drop` below the accuracy expected of
               the serving version on `accuracy_windows` consecutive windows of fresh labelled rows.

Either opens an episode; a retrain starts once `min_feedback` labelled rows have arrived since the episode began
(the new model needs examples of the new traffic), not while a retrain runs, not within the cooldown, and only
when retraining is on.
"""

from __future__ import annotations

import dataclasses

from ..config import RetrainPolicy


@dataclasses.dataclass(frozen=True)
class ModelState:
    alert_windows: int = 0          # consecutive alert windows
    low_windows: int = 0            # consecutive low-accuracy windows
    onset: int | None = None        # feedback count when the current episode began
    reason: str | None = None       # drift, accuracy or drift+accuracy


@dataclasses.dataclass(frozen=True)
class Observation:
    drift_alert: bool | None = None     # verdict of a freshly judged drift window (None: no new window)
    low_accuracy: bool | None = None    # a fresh accuracy window below expectation (None: no new window)
    feedback_count: int = 0             # labelled rows received so far (the store's count)
    can_retrain: bool = False           # retraining on, none running, cooldown over


@dataclasses.dataclass(frozen=True)
class Decision:
    state: ModelState
    new_drift_alert: bool = False       # the first alert window of a run of them (an event)
    new_episode: bool = False           # an episode opened now (an event)
    retrain: bool = False               # start a retrain now
    reason: str | None = None           # the criteria met now


def judge(st: ModelState, obs: Observation, policy: RetrainPolicy) -> Decision:
    alerts = st.alert_windows if obs.drift_alert is None else (st.alert_windows + 1 if obs.drift_alert else 0)
    lows = st.low_windows if obs.low_accuracy is None else (st.low_windows + 1 if obs.low_accuracy else 0)
    met = [name for name, on in (("drift", alerts >= policy.drift_windows),
                                 ("accuracy", lows >= policy.accuracy_windows)) if on]
    reason = "+".join(met) or None
    onset = None if reason is None else (obs.feedback_count if st.onset is None else st.onset)
    new = ModelState(alerts, lows, onset, None if reason is None else (st.reason if st.onset is not None else reason))
    retrain = reason is not None and obs.can_retrain and obs.feedback_count - onset >= policy.min_feedback
    return Decision(new, new_drift_alert=bool(obs.drift_alert) and alerts == 1,
                    new_episode=reason is not None and st.onset is None, retrain=retrain, reason=reason)
