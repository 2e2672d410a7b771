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
from evaluation.choice import (CANDIDATES, FALLBACK, FinalChoice, choose_crf_oof, choose_image_score,
                               choose_image_threshold, choose_threshold, combine, judge_candidates, pick,
                               sigmoid)
from evaluation.decisions import MethodMaps, nbs_from_record, nbs_method, run_heldout_maps
from evaluation.metrics import auroc, best_f1_threshold
from models.crf import CRFConfig
from models.final_predictor import (FinalPredictorConfig, PredictorShape, cross_fit, final_predictor,
                                    fit_profile_member, fold_groups, heldout_final_maps, pooled)
from models.predictor import PredictorEnsemble, predictor_from_saved, probability_maps, profile_scale
from models.segmenter import BundleMeta, save_bundle
from runner.folder import BUNDLE, RunFolder


def predictor_shape(env: BatchSamplingEnv, final: FinalPredictorConfig) -> PredictorShape:
    """The nets of the run's final predictor: the final config's shape, where it gives one and
    the final predictor is fit (final.steps > 0), else the env predictor's (the one exported)."""
    p = env.config.predictor

    def pick(mine: Any, env_value: Any) -> Any:
        return env_value if mine is None or final.steps <= 0 else mine

    return PredictorShape(env.config.profiles.length, pick(final.width, p.width), pick(final.inputs, p.inputs),
                          p.skip, pick(final.arch, p.arch), pick(final.colour_jitter, p.colour_jitter))


def export(env: BatchSamplingEnv, run: RunFolder, final: FinalPredictorConfig, seed: int) -> None:
    """best_profiles.npz, predictor.pt (the predictor of the best moment, or with final.steps the
    final predictor fit on the best labeled profiles, seeded by `seed`) and bundle.pt: what
    evaluate.py and predict.py need, nothing of the agent."""
    if final.steps > 0 and final.choose:
        return export_chosen(env, run, final, seed)
    profiles, process, split = env.best_profiles(), env.process, env.split
    images_l, masks_l = np.stack([s.image for s in split.labeled]), np.stack([s.mask for s in split.labeled])
    refit = final.steps > 0
    shape = predictor_shape(env, final)
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
    split = env.split
    prob_u = unlabeled_maps(env, fields, state_dict, profiles)
    masks_l = np.stack([s.mask for s in split.labeled])
    heldout = run_heldout_maps(profiles, fields["refit"], masks_l, np.stack([s.image for s in split.labeled]))
    return nbs_method(prob_u, fields["refit"], heldout, float(masks_l.mean()))


def unlabeled_maps(env: BatchSamplingEnv, fields: dict[str, Any], state_dict: dict[str, torch.Tensor],
                   profiles: dict[str, np.ndarray]) -> np.ndarray:
    """The exported predictor's probability maps of the scored D_u images."""
    rgb = None
    if fields["inputs"] == "profile+rgb":
        rgb = torch.as_tensor(np.stack([s.image for s in env.split.unlabeled])).permute(0, 3, 1, 2).float() / 255.0
    return probability_maps(predictor_from_saved({**fields, "state_dict": state_dict}, env.device),
                            torch.as_tensor(profiles["unlabeled"]), rgb).cpu().numpy()


def decision_record(m: MethodMaps) -> dict[str, Any]:
    """What evaluate.py and the bundle need of a decision: threshold (None: p > 0.5), CRF, why."""
    return {"threshold": None if m.threshold is None else float(m.threshold), "crf": bool(m.crf),
            "note": m.note, "crf_choice": m.crf_choice}


def write_bundle(env: BatchSamplingEnv, run: RunFolder, fields: dict[str, Any], state_dict: dict[str, torch.Tensor],
                 decision: MethodMaps, seed: int, error: str | None = None, image_score: str = "max",
                 image_threshold: float | None = None) -> None:
    """<run>/bundle.pt: the best moment's AE snapshots, the exported predictor and its decision
    (threshold, CRF), so that predict.py can segment images the run never saw."""
    c, split = env.config, env.split
    error = error or c.profiles.error
    meta = BundleMeta(image_size=env.image_size, patch_size=c.sampler.patch_size, ae=dataclasses.asdict(c.ae),
                      absolute_error=error == "absolute", error=error, image_score=image_score,
                      image_threshold=image_threshold, loss_map=c.profiles.mode,
                      loss_map_stride=c.profiles.stride, predictor=fields,
                      threshold=0.5 if decision.threshold is None else float(decision.threshold),
                      threshold_rule=f"{decision.note}; {decision.crf_choice}",
                      crf=dataclasses.asdict(CRFConfig()) if decision.crf else None,
                      source={"run": str(run.path.resolve()), "category": split.category, "seed": seed,
                              "best_update": int(env.process.best.update)})
    save_bundle(run / BUNDLE, meta, env.process.best.snapshots, state_dict)


def choose_profiles(env: BatchSamplingEnv, final: FinalPredictorConfig) -> tuple[dict[str, np.ndarray], str, bool, str]:
    """The best moment's profiles under the loss-map error (the env's, or one of final.errors)
    and mean (raw, or each profile normalised by its mean) whose mean D_l profile ranks the
    labeled pixels best (ties: the env's error, normalised). Returns the profiles, the error,
    whether the member reads the raw mean, and why."""
    masks_l = np.stack([s.mask for s in env.split.labeled])
    own = env.config.profiles.error
    results = []
    sets = {own: env.best_profiles()}
    for error in [e for e in final.errors if e != own]:
        sets[error] = env.best_profiles(error)
    for error, prof in sets.items():
        for raw in (False, True):
            mean = mean_profile(prof["labeled"], raw)
            results.append((auroc(mean, masks_l) if 0 < masks_l.sum() < masks_l.size else 0.5, error, raw))
    best = max(results, key=lambda r: r[0])  # the first of equals: the env's error, normalised
    why = "; ".join(f"{e} {'raw' if r else 'normalised'} {a:.3f}" for a, e, r in results)
    return sets[best[1]], best[1], best[2], f"D_l pixel AUROC of the mean profile: {why}"


def export_chosen(env: BatchSamplingEnv, run: RunFolder, final: FinalPredictorConfig, seed: int) -> None:
    """The final predictor chosen on D_l (final.choose): the profiles' error and mean, then cross-
    fitted nets whose out-of-fold maps choose the pool, the threshold, the CRF and the image
    score (evaluation.choice); the profiles' member alone where D_l cannot judge. Writes
    best_profiles.npz, predictor.pt (with the decision and the choice) and bundle.pt."""
    split, process = env.split, env.process
    images_l, masks_l = np.stack([s.image for s in split.labeled]), np.stack([s.mask for s in split.labeled])
    shape = predictor_shape(env, final)
    groups = fold_groups(masks_l, final.folds)
    if groups:
        profiles, error, raw, error_why = choose_profiles(env, final)
    else:  # one defect image cannot choose among errors: the profiles as trained, as evaluate.py's row reads them
        profiles, error, raw = env.best_profiles(), env.config.profiles.error, True
        error_why = "D_l has fewer than two defect images: the env's own error and the raw mean, nothing chosen"
    print(f"final predictor: {error} profiles, {'raw' if raw else 'normalised'} mean ({error_why})")
    member = fit_profile_member(profiles["labeled"], masks_l, raw=raw).to(env.device)
    cross = None
    if groups:
        cross = cross_fit(profiles["labeled"], images_l, masks_l, shape, final, groups, seed, raw, env.device)
        choice = choose_on_oof(cross, masks_l, images_l, final, mean_profile(profiles["labeled"], raw))
        if choice.weights == CANDIDATES[FALLBACK]:  # the member alone: thresholded as the profiles' row is
            choice.threshold, choice.threshold_rule = member_threshold(member, profiles["labeled"], masks_l)
            choice.notes[1] = f"threshold: {choice.threshold_rule}"
    else:
        choice = fallback_choice(member, profiles["labeled"], masks_l)
    if cross is not None and choice.weights != CANDIDATES[FALLBACK]:
        prob_l = sigmoid(combine(cross.logits, choice.weights))  # out of fold
    else:  # the member: two numbers fit on all of D_l, nothing to hold out
        prob_l = probability_maps(member, torch.as_tensor(profiles["labeled"])).cpu().numpy()
    choice.image_threshold, why = choose_image_threshold(prob_l, masks_l, choice.image_score, choice.threshold)
    choice.notes.insert(len(choice.notes) - 1, why)  # the CRF's note stays last: the decision's crf_choice
    choice.notes.insert(0, f"profiles: {error}, {'raw' if raw else 'normalised'} mean ({error_why})")
    net = pooled(cross, member, choice.weights)
    run.write_best_profiles(profiles, split, process.best.update, process.best_l_pred, error=error)
    fields = {"profile_length": shape.profile_length, "width": shape.width, "inputs": shape.inputs,
              "skip": shape.skip, "arch": shape.arch, "norm": "batch" if shape.arch == "unet" else "group",
              "refit": True, "pool": "final", "profile_nets": len(net.profile_nets),
              "image_nets": len(net.image_nets), "member_raw": raw, "weights": [float(w) for w in net.weights]}
    state_dict = net.state_dict()
    prob_u = unlabeled_maps(env, fields, state_dict, profiles)
    decision = nbs_from_record(prob_u, {"threshold": choice.threshold, "crf": choice.crf, "note":
                                        f"final map chosen on D_l: {choice.candidate}", "crf_choice": choice.notes[-1]})
    record = {**decision_record(decision), "image_score": choice.image_score,
              "image_threshold": choice.image_threshold, "choice": choice.record()}
    run.write_predictor({"state_dict": state_dict, "alpha": process.alpha, **fields, "decision": record})
    write_bundle(env, run, fields, state_dict, decision, seed, error=error, image_score=choice.image_score,
                 image_threshold=choice.image_threshold)


def mean_profile(profiles: np.ndarray, raw: bool) -> np.ndarray:
    """The mean over T of profiles (n, T, H, W): raw, or each normalised by its own mean loss."""
    p = torch.as_tensor(profiles)
    return (p if raw else p / profile_scale(p)).mean(dim=1).numpy()


def choose_on_oof(cross: Any, masks: np.ndarray, images: np.ndarray, final: FinalPredictorConfig,
                  profiles_mean: np.ndarray) -> FinalChoice:
    """The candidate, threshold, CRF and image score chosen on the cross-fit's out-of-fold maps;
    eligible candidates rank the labeled pixels at least as `profiles_mean` does."""
    scores = judge_candidates(cross.logits, masks, profiles_mean)
    best = pick(scores)
    prob = sigmoid(combine(cross.logits, best.weights))
    threshold, t_why = choose_threshold(prob, masks, cross.group_of)
    crf, crf_why = choose_crf_oof(prob, threshold, masks, images, final.crf_margin)
    rule, rule_why = choose_image_score(prob, masks, threshold)
    notes = [f"candidates (OOF pixel AUROC / F1-max; eligible: AUROC >= the profiles' mean's, "
             f"{auroc(profiles_mean, masks):.3f}): " + "; ".join(
        f"{s.name} {s.auroc:.3f} / {s.f1_max:.3f}{'' if s.eligible else ' (not eligible)'}" for s in scores),
        f"threshold: {t_why}", f"image score: {rule_why}", crf_why]
    return FinalChoice(best.name, best.weights, threshold, t_why, crf, rule, len(masks), scores, notes)


def member_threshold(member: Any, labeled: np.ndarray, masks: np.ndarray) -> tuple[float, str]:
    """The profiles' member's threshold: the best F1 of its maps of all labeled images, as
    evaluate.py's profiles row thresholds the mean profile (a monotone two-number model: its
    ranking is the mean profile's, so this is the threshold of that row in probability units)."""
    prob = probability_maps(member, torch.as_tensor(labeled)).cpu().numpy()
    t = best_f1_threshold(prob, masks) if masks.any() else 0.5
    return t, f"{t:.3g}, the best F1 of the profiles' member on the D_l maps (the profiles' row's rule)"


def fallback_choice(member: Any, labeled: np.ndarray, masks: np.ndarray) -> FinalChoice:
    """Where D_l cannot judge (fewer than two defect images): the profiles' member alone, thresholded
    as evaluate.py's profiles row is, no CRF, the max image score."""
    t, t_why = member_threshold(member, labeled, masks)
    why = (f"D_l has {int(masks.reshape(len(masks), -1).any(axis=1).sum())} defect image(s): too few to judge any "
           "net on a defect it did not learn from, so the profiles' member alone")
    return FinalChoice(FALLBACK, CANDIDATES[FALLBACK], t, t_why, False, "max", 0, [],
                       [why, f"threshold: {t_why}", "CRF off: nothing to judge it on"])
