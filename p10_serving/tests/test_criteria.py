"""The retraining criteria as the pure function they are: state + observation -> next state + decision, no clock,
no server. Each rule of the README's "retraining criteria", one case each."""

from p10_serving.config import RetrainPolicy
from p10_serving.lifecycle.criteria import ModelState, Observation, judge

POLICY = RetrainPolicy(drift_windows=2, accuracy_windows=2, min_feedback=100)


def run(observations, policy=POLICY, state=ModelState()):
    decisions = []
    for obs in observations:
        d = judge(state, obs, policy)
        decisions.append(d)
        state = d.state
    return decisions


def test_one_alert_window_is_an_alert_not_an_episode():
    d = run([Observation(drift_alert=True)])[0]
    assert d.new_drift_alert and not d.new_episode and d.reason is None and d.state.alert_windows == 1


def test_two_consecutive_alert_windows_open_a_drift_episode_once():
    ds = run([Observation(drift_alert=True, feedback_count=5), Observation(drift_alert=True, feedback_count=7),
              Observation(drift_alert=True, feedback_count=9)])
    assert [d.new_episode for d in ds] == [False, True, False]
    assert [d.new_drift_alert for d in ds] == [True, False, False]  # the event marks the first of a run
    assert ds[1].reason == "drift" and ds[2].state.onset == 7  # the onset is the feedback count when it opened


def test_a_quiet_window_in_between_resets_the_count():
    ds = run([Observation(drift_alert=True), Observation(drift_alert=False), Observation(drift_alert=True)])
    assert [d.state.alert_windows for d in ds] == [1, 0, 1] and not any(d.new_episode for d in ds)


def test_no_new_window_leaves_the_counts_as_they_are():
    ds = run([Observation(drift_alert=True), Observation(), Observation(low_accuracy=True), Observation()])
    assert [(d.state.alert_windows, d.state.low_windows) for d in ds] == [(1, 0), (1, 0), (1, 1), (1, 1)]


def test_accuracy_and_drift_together_name_both():
    ds = run([Observation(drift_alert=True, low_accuracy=True), Observation(drift_alert=True, low_accuracy=True)])
    assert ds[1].reason == "drift+accuracy" and ds[1].new_episode


def test_a_retrain_waits_for_enough_feedback_since_the_onset_and_for_permission():
    alerts = [Observation(drift_alert=True, feedback_count=50, can_retrain=True)] * 2
    ds = run([*alerts, Observation(feedback_count=149, can_retrain=True),
              Observation(feedback_count=150, can_retrain=False), Observation(feedback_count=150, can_retrain=True)])
    assert [d.retrain for d in ds] == [False, False, False, False, True]  # 100 rows since the onset at 50


def test_the_episode_closes_when_the_criteria_stop_holding():
    ds = run([Observation(drift_alert=True), Observation(drift_alert=True), Observation(drift_alert=False)])
    assert ds[1].state.onset is not None and ds[2].state.onset is None and ds[2].reason is None


def test_the_state_is_not_mutated():
    state = ModelState()
    judge(state, Observation(drift_alert=True), POLICY)
    assert state == ModelState()
