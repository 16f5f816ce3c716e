"""config.py: from_config builds the right optimizer; every bad config gets one message that
names its field (and line, when read from a file)."""
import numpy as np
import pytest
import yaml

import adamax_engine as ae
from adamax_engine import lr
from adamax_engine.config import ConfigError, from_config, load_yaml
from adamax_engine.experiments import spec as S


def params():
    names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "embedding.weight"]
    rng = np.random.default_rng(0)
    return [ae.Parameter(rng.standard_normal(4).astype(np.float32), name=n) for n in names]


def test_from_config_builds_groups_scheduler_clip_decay():
    ps = params()
    opt = from_config({"optimizer": {
        "learning_rate": 0.1, "flavor": "torch", "weight_decay": {"type": "L1", "coeff": 0.01},
        "grad_clip": {"type": "global_norm", "clip_norm": 2.0, "auto_skip_clip": True},
        "lr_scheduler": {"type": "StepDecay", "step_size": 3, "gamma": 0.5,
                         "warmup": {"steps": 2, "start_lr": 0.01}},
        "groups": [{"match": "*.bias", "weight_decay": 0.0},
                   {"match": ["embedding.*", "fc2.*"], "learning_rate": 0.5, "beta1": 0.8}]}}, ps)
    assert opt.flavor == "torch"
    sched = opt.lr_scheduler  # public: the loop steps it
    assert sched is opt.settings.learning_rate
    assert isinstance(sched, lr.LinearWarmup) and isinstance(sched.learning_rate, lr.StepDecay)
    assert sched() == 0.01 and sched.end_lr == 0.1 and sched.learning_rate.gamma == 0.5
    names = [[p.name for p in g["params"]] for g in opt.settings.groups]
    assert names == [["fc1.bias", "fc2.bias"], ["fc2.weight", "embedding.weight"], ["fc1.weight"]]
    assert opt.settings.groups[0]["weight_decay"].coeff == 0.0
    assert opt.settings.groups[1]["learning_rate"] == 0.5 and opt.settings.groups[1]["beta1"] == 0.8
    assert opt.regularization.mode == ae.L1Decay(0.01).mode
    assert opt.settings.grad_clip.auto_skip_clip and opt.settings.grad_clip.clip_norm == 2.0
    sched.step()
    sched.step()
    assert opt.get_lr() == 0.1  # the warmup is over: the optimizer reads the stepped scheduler
    assert from_config({"learning_rate": 0.1}, params()).lr_scheduler is None


def test_config_optimizer_steps_like_the_same_optimizer_built_in_code(rng):
    """The YAML route and the Python route give the same numbers."""
    a, b = params(), params()
    opt_a = from_config({"optimizer": {"learning_rate": 0.05, "weight_decay": 1e-3,
                                       "grad_clip": {"type": "value", "max": 0.5},
                                       "groups": [{"match": "*.bias", "learning_rate": 2.0}]}}, a)
    opt_b = ae.Adamax(0.05, parameters=[{"params": [b[1], b[3]], "learning_rate": 2.0},
                                        {"params": [b[0], b[2], b[4]]}],
                      weight_decay=1e-3, grad_clip=ae.ClipGradByValue(0.5))
    for _ in range(3):
        for p, q in zip(a, b):
            g = rng.standard_normal(4).astype(np.float32)
            p.grad, q.grad = g, g.copy()
        opt_a.step()
        opt_b.step()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.data, q.data)


BAD = [  # (YAML text, the message must contain this)
    ("optimizer: {learnig_rate: 0.1}", "optimizer.learnig_rate: unknown key (did you mean 'learning_rate'?)"),
    ("optimizer: {learning_rate: -1}", "optimizer.learning_rate: must be > 0, got -1"),
    ("optimizer: {learning_rate: fast}", "optimizer.learning_rate: expected a number, got str 'fast'"),
    ("optimizer: {beta1: 1.5}", "optimizer.beta1: must be < 1, got 1.5"),
    ("optimizer: {epsilon: -1.0e-8}", "optimizer.epsilon: must be >= 0, got -1e-08"),
    ("optimizer: {flavor: pytorch}", "optimizer.flavor: expected one of keras, optax, paddle, torch, got 'pytorch'"),
    ("optimizer:\n  lr_scheduler:\n    type: StepDecay\n    step_size: 2\n    gamma: 1.5",
     "optimizer.lr_scheduler.gamma: must be < 1.0, got 1.5"),
    ("optimizer: {lr_scheduler: {type: StepDecy, step_size: 2}}",
     "optimizer.lr_scheduler.type: expected one of"),
    ("optimizer: {lr_scheduler: {step_size: 2}}", "optimizer.lr_scheduler.type: missing (required"),
    ("optimizer: {lr_scheduler: {type: StepDecay}}", "optimizer.lr_scheduler.step_size: missing (required by StepDecay)"),
    ("optimizer: {lr_scheduler: {type: StepDecay, step_size: 2.5}}", "optimizer.lr_scheduler.step_size: expected an int"),
    ("optimizer: {lr_scheduler: {type: CosineAnnealingDecay, T_max: 10, eta: 0}}",
     "optimizer.lr_scheduler.eta: unknown key (did you mean 'eta_min'?)"),
    ("optimizer: {lr_scheduler: {type: StepDecay, step_size: 2, warmup: {start_lr: 0}}}",
     "optimizer.lr_scheduler.warmup.steps: missing (required)"),
    ("optimizer: {grad_clip: {type: global, clip_norm: 1}}", "optimizer.grad_clip.type: expected one of value, norm, global_norm, got 'global'"),
    ("optimizer: {grad_clip: {type: norm, clip_norm: 0}}", "optimizer.grad_clip.clip_norm: must be > 0, got 0"),
    ("optimizer: {grad_clip: {type: value, max: 1, min: 2}}", "optimizer.grad_clip.min: must be <= 1.0, got 2"),
    ("optimizer: {weight_decay: {type: L3, coeff: 0.1}}", "optimizer.weight_decay.type: expected one of L1, L2, got 'L3'"),
    ("optimizer: {groups: [{learning_rate: 0.5}]}", "optimizer.groups.0.match: missing (required)"),
    ("optimizer: {groups: [{match: '*.bias', lr: 0.5}]}", "optimizer.groups.0.lr: unknown key"),
    ("optimizer: {groups: {match: '*.bias'}}", "optimizer.groups: expected a list of mappings"),
    ("experiment: {steps: 0}", "experiment.steps: must be >= 1, got 0"),
    ("experiment: {stpes: 10}", "experiment.stpes: unknown key (did you mean 'steps'?)"),
    ("problem: {name: mnist}", "problem.name: expected one of"),
    ("problem: {name: mlp_spirals, hiden: 3}", "problem.hiden: unknown key (did you mean 'hidden'?)"),
    ("problem: {name: quadratic, condition: 0.5}", "problem.condition: must be >= 1.0, got 0.5"),
    ("model: {framework: jax}", "model.framework: expected one of numpy, torch, got 'jax'"),
    ("sweep: {grid: {optimizer.learning_rate: 0.1}}", "sweep.grid.optimizer.learning_rate: expected a non-empty list"),
    ("sweep: {grid: {optimizer.beta1: [0.5, 2.0]}}", "point [optimizer.beta1=2.0]: optimizer.beta1: must be < 1"),
    ("optimizer: [1, 2]", "optimizer: expected a mapping, got list"),
    ("optimizer: {multi_precision: 'yes'}", "optimizer.multi_precision: expected true or false, got 'yes'"),
    ("optimizer: {skip_nonfinite: 1}", "optimizer.skip_nonfinite: expected true or false, got 1"),
    ("distributed: {backend: nccl}", "distributed.backend: expected one of mpi, got 'nccl'"),
    ("distributed: {shard_state: 1}", "distributed.shard_state: expected true or false, got 1"),
    ("distributed: {shards: 2}", "distributed.shards: unknown key"),
    ("optimizr: {}", "optimizr: unknown key (did you mean 'optimizer'?)"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_bad_config_names_the_field(tmp_path, text, message):
    path = tmp_path / "exp.yaml"
    path.write_text("# a comment line\n" + text + "\n")
    data, src = load_yaml(path)
    with pytest.raises(ConfigError) as err:
        S.validate(data, src)
    assert message in str(err.value)
    assert str(err.value).startswith(f"{path}:")  # file and line are given
    assert str(err.value).count("\n") == 0  # one line


def test_line_numbers_point_at_the_field(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("experiment:\n  steps: 10\noptimizer:\n  learning_rate: 0.1\n"
                    "  lr_scheduler:\n    type: StepDecay\n    step_size: 2\n    gamma: 1.5\n")
    data, src = load_yaml(path)
    with pytest.raises(ConfigError, match=r"exp\.yaml:8: optimizer\.lr_scheduler\.gamma"):
        S.validate(data, src)


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("optimizer: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got list"):
        load_yaml(path)


def test_set_overrides():
    data = yaml.safe_load("optimizer: {learning_rate: 0.1}\n")
    S.apply_overrides(data, ["optimizer.learning_rate=0.5", "experiment.steps=7",
                             "optimizer.grad_clip={type: norm, clip_norm: 1}"])
    assert data["optimizer"]["learning_rate"] == 0.5 and data["experiment"]["steps"] == 7
    assert data["optimizer"]["grad_clip"]["type"] == "norm"
    with pytest.raises(ConfigError, match="expected key=value"):
        S.apply_overrides(data, ["optimizer.learning_rate"])
    with pytest.raises(ConfigError, match="optimizer.learning_rate: --set: is a float, not a mapping"):
        S.apply_overrides(data, ["optimizer.learning_rate.x=1"])


def test_multi_precision_from_yaml(rng):
    import adamax_engine as ae
    p = ae.Parameter(rng.standard_normal(4).astype(np.float16), name="w")
    opt = from_config({"optimizer": {"learning_rate": 0.1, "multi_precision": True,
                                     "skip_nonfinite": True}}, [p])
    assert opt.settings.multi_precision and opt.settings.skip_nonfinite
    p.grad = np.ones(4, np.float16)
    opt.step()
    assert "master_weights" in opt.state_dict()
