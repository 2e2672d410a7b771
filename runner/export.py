"""What training leaves for evaluation and prediction: the best moment's profiles, the exported
predictor with its decision rule, and the bundle.

The decision (threshold, dense CRF or not) is chosen once, here, on labeled images only
(evaluation.decisions.nbs_method) and recorded in predictor.pt and the bundle; evaluate.py and
predict.py read it instead of choosing again.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from envs.batch_sampling_env import BatchSamplingEnv
from evaluation.decisions import MethodMaps, nbs_method, run_heldout_maps
from models.crf import CRFConfig
from models.final_predictor import FinalPredictorConfig, PredictorShape, final_predictor, heldout_final_maps
from models.predictor import PredictorEnsemble, predictor_from_saved, probability_maps
from models.segmenter import BundleMeta, save_bundle
from runner.folder import BUNDLE, RunFolder


def predictor_shape(env: BatchSamplingEnv) -> PredictorShape:
    """The nets of the run's final predictor: the env predictor's shape and jitter."""
    c = env.config
    return PredictorShape(c.profiles.length, c.predictor.width, c.predictor.inputs, c.predictor.skip,
                          c.predictor.arch, c.predictor.colour_jitter)


def export(env: BatchSamplingEnv, run: RunFolder, final: FinalPredictorConfig, seed: int) -> None:
    """best_profiles.npz, predictor.pt (the predictor of the best moment, or with final.steps the
    final predictor fit on the best labeled profiles, seeded by `seed`) and bundle.pt: what
    evaluate.py and predict.py need, nothing of the agent."""
    profiles, process, split = env.best_profiles(), env.process, env.split
    images_l, masks_l = np.stack([s.image for s in split.labeled]), np.stack([s.mask for s in split.labeled])
    refit = final.steps > 0
    shape = predictor_shape(env)
    if final.heldout and refit:  # its recipe on D_l images it does not see
        kinds = 2 if final.image_members else 1
        print(f"leave-one-out fits of the final predictor ({kinds} x {final.steps} steps per held-out D_l image)")
        profiles["labeled_refit_heldout_prob"], profiles["labeled_refit_heldout_index"] = heldout_final_maps(
            profiles["labeled"], images_l, masks_l, shape, final, seed, env.device)
    run.write_best_profiles(profiles, split, process.best.update, process.best_l_pred)
    state_dict, norm, members, image_members = process.best.predictor, "group", 1, 0
    if refit:  # fresh nets fit on the best labeled profiles with the U-Net baseline's recipe
        members, image_members = final.members + final.image_members, final.image_members
        print(f"fitting the final predictor on the best labeled profiles ({members} x {final.steps} steps"
              + (f", {image_members} of them on the image only)" if image_members else ")"))
        net = final_predictor(profiles["labeled"], images_l, masks_l, shape, final, seed, env.device)
        state_dict = net.state_dict()
        norm = getattr(net.members[0] if isinstance(net, PredictorEnsemble) else net, "norm", "group")
    fields = {"profile_length": shape.profile_length, "width": shape.width, "inputs": shape.inputs,
              "skip": shape.skip, "arch": shape.arch, "norm": norm, "refit": refit, "ensemble": members,
              "image_members": image_members, "pool": final.pool if refit else "prob",
              "profile_member": bool(refit and final.profile_member)}
    decision = decide(env, fields, state_dict, profiles)
    run.write_predictor({"state_dict": state_dict, "alpha": process.alpha, **fields,
                         "decision": decision_record(decision)})
    write_bundle(env, run, fields, state_dict, decision, seed)


def decide(env: BatchSamplingEnv, fields: dict[str, Any], state_dict: dict[str, torch.Tensor],
           profiles: dict[str, np.ndarray]) -> MethodMaps:
    """The NBS decision of the exported predictor on the scored images, chosen on labeled images
    only (evaluation.decisions.nbs_method: its threshold and whether the dense CRF follows)."""
    c, split = env.config, env.split
    rgb = None
    if c.predictor.inputs == "profile+rgb":
        rgb = torch.as_tensor(np.stack([s.image for s in split.unlabeled])).permute(0, 3, 1, 2).float() / 255.0
    prob_u = probability_maps(predictor_from_saved({**fields, "state_dict": state_dict}, env.device),
                              torch.as_tensor(profiles["unlabeled"]), rgb).cpu().numpy()
    masks_l = np.stack([s.mask for s in split.labeled])
    heldout = run_heldout_maps(profiles, fields["refit"], masks_l, np.stack([s.image for s in split.labeled]))
    return nbs_method(prob_u, fields["refit"], heldout, float(masks_l.mean()))


def decision_record(m: MethodMaps) -> dict[str, Any]:
    """What evaluate.py and the bundle need of a decision: threshold (None: p > 0.5), CRF, why."""
    return {"threshold": None if m.threshold is None else float(m.threshold), "crf": bool(m.crf),
            "note": m.note, "crf_choice": m.crf_choice}


def write_bundle(env: BatchSamplingEnv, run: RunFolder, fields: dict[str, Any], state_dict: dict[str, torch.Tensor],
                 decision: MethodMaps, seed: int) -> None:
    """<run>/bundle.pt: the best moment's AE snapshots, the exported predictor and its decision
    (threshold, CRF), so that predict.py can segment images the run never saw."""
    c, split = env.config, env.split
    meta = BundleMeta(image_size=env.image_size, patch_size=c.sampler.patch_size, ae=dataclasses.asdict(c.ae),
                      absolute_error=c.profiles.error == "absolute", error=c.profiles.error, loss_map=c.profiles.mode,
                      loss_map_stride=c.profiles.stride, predictor=fields,
                      threshold=0.5 if decision.threshold is None else float(decision.threshold),
                      threshold_rule=f"{decision.note}; {decision.crf_choice}",
                      crf=dataclasses.asdict(CRFConfig()) if decision.crf else None,
                      source={"run": str(run.path.resolve()), "category": split.category, "seed": seed,
                              "best_update": int(env.process.best.update)})
    save_bundle(run / BUNDLE, meta, env.process.best.snapshots, state_dict)
