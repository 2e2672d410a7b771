"""The AE probe (runner.ae_probe): which AE a run trains with, chosen on D_l before training."""
from __future__ import annotations

import csv
import dataclasses
import json
import math

import pytest
import torch

import train
from models.autoencoder import AEConfig
from runner.ae_probe import AEProbeConfig, ProbeResult, candidate_aes, choose_ae, describe, select
from runner.presets import PRESETS
from tests.helpers import TINY, TINY_ARGS, toy_split


def test_candidates_are_the_preset_ae_then_its_variants():
    c = PRESETS["ours"].env
    aes = candidate_aes(c, AEProbeConfig(candidates=({"norm": False}, {"skip_levels": [1]})))
    assert aes[0] == c.ae and aes[0].norm
    assert aes[1] == dataclasses.replace(c.ae, norm=False)
    assert aes[2] == dataclasses.replace(c.ae, skip_levels=(1,))
    assert all(p.probe.candidates == () for p in PRESETS.values())  # opt-in


def test_select_keeps_the_preset_ae_unless_another_is_clearly_better():
    def results(*aurocs: float) -> list[ProbeResult]:
        return [ProbeResult(AEConfig(width=8 * (k + 1)), a, a, 1.0) for k, a in enumerate(aurocs)]

    assert select(results(0.80, 0.81), 0.02).ae.width == 8  # within the margin: the preset's AE
    assert select(results(0.80, 0.83), 0.02).ae.width == 16
    r = results(0.80, 0.83, 0.84)  # the third must beat the second, not just the first, by the margin
    assert select(r, 0.02).ae.width == 16 and [x.chosen for x in r] == [False, True, False]
    assert select(results(math.nan, 0.6), 0.02).ae.width == 16  # nan never wins
    assert select(results(0.7, math.nan), 0.02).ae.width == 8


def test_choose_ae_probes_each_candidate_on_dl_and_returns_the_chosen_config():
    split = toy_split(32)
    probe = AEProbeConfig(candidates=({"norm": True}, {"width": 8}), updates=6)
    chosen, results = choose_ae(split, TINY, probe, seed=0, device=torch.device("cpu"))
    assert [r.ae for r in results] == [TINY.ae, dataclasses.replace(TINY.ae, norm=True),
                                       dataclasses.replace(TINY.ae, width=8)]
    assert sum(r.chosen for r in results) == 1
    assert all(0.0 <= r.dl_profile_auroc <= 1.0 and r.ae_vs_mean_colour > 0 for r in results)
    assert chosen.ae == next(r.ae for r in results if r.chosen)
    again = choose_ae(split, TINY, probe, seed=0, device=torch.device("cpu"))[1]  # seeded: the same numbers
    assert [r.dl_profile_auroc for r in again] == [r.dl_profile_auroc for r in results]
    assert choose_ae(split, TINY, AEProbeConfig(), 0, torch.device("cpu")) == (TINY, [])  # nothing to choose: no probe


def test_bad_candidates_are_refused_by_name():
    with pytest.raises(ValueError, match=r"\['nrm'\] are not AE fields"):
        AEProbeConfig(candidates=({"nrm": False},))
    with pytest.raises(ValueError, match="ae.width=0"):
        AEProbeConfig(candidates=({"width": 0},))
    with pytest.raises(SystemExit, match="probe.candidates"):
        train.main(["--preset", "ours", *TINY_ARGS, "--set", "probe.candidates=[1]", "--updates", "1"])


def _log(run) -> list[dict[str, str]]:
    with open(run / "log.csv") as f:
        return [{k: v for k, v in row.items() if k != "wall_s"} for row in csv.DictReader(f)]


def test_a_run_whose_probe_keeps_the_preset_ae_trains_as_one_without_a_probe(tiny_root, tmp_path):
    """The probe draws its own random numbers and the run is re-seeded after it, so keeping the
    preset's AE changes nothing; config.json records the probe and the AE it chose."""
    common = ["--data-root", str(tiny_root), "--preset", "ours", *TINY_ARGS, "--updates", "3",
              "--set", "ae_training.pretrain_steps=4", "--set", "final.steps=0"]
    probed = train.main([*common, "--set", 'probe.candidates=[{"norm": false}]', "--set", "probe.margin=0.99",
                         "--run-dir", str(tmp_path / "probed")])
    plain = train.main([*common, "--run-dir", str(tmp_path / "plain")])
    assert _log(probed) == _log(plain)
    config = json.loads((probed / "config.json").read_text())
    assert [row["chosen"] for row in config["ae_probe"]] == [True, False]
    assert config["env"]["ae"]["norm"] is True and config["probe"]["candidates"] == [{"norm": False}]
    assert "ae_probe" not in json.loads((plain / "config.json").read_text())


def test_the_report_says_which_ae_the_probe_chose():
    from runner.evaluation import probe_text

    assert probe_text(None) == "" == probe_text([])
    results = [ProbeResult(AEConfig(norm=True), 0.886, 0.88, 0.64), ProbeResult(AEConfig(norm=False), 0.947, 0.94, 1.42)]
    select(results, 0.02)
    rows = describe(results)
    assert [r["label"] for r in rows] == ["preset AE", "norm=False"]
    text = probe_text(json.loads(json.dumps(rows)))  # as read back from config.json
    assert "preset AE: 0.886" in text and "**chosen**: norm=False: 0.947" in text
