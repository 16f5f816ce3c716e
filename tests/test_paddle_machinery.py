"""ae.Adamax inside paddle's own machinery: hapi Model.fit / save / load, paddle.amp.GradScaler
(forced on, as on a GPU), paddle's LR schedulers stepped by hapi, paddle Tensors in state
dicts and ReduceOnPlateau, state dicts across paddle.optimizer.Adamax both ways."""
import os
import warnings

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")
import adamax_engine as ae  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def net():
    with paddle.utils.unique_name.guard():  # the same parameter names every time, as in a
        paddle.seed(0)                      # new process (state-dict keys use them)
        return paddle.nn.Sequential(paddle.nn.Linear(4, 8), paddle.nn.Tanh(),
                                    paddle.nn.Linear(8, 2))


def dataset():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 4)).astype("float32")
    y = rng.standard_normal((32, 2)).astype("float32")
    return paddle.io.TensorDataset([paddle.to_tensor(x), paddle.to_tensor(y)])


def hapi(make_opt, epochs=1, model_net=None):
    network = model_net or net()
    model = paddle.Model(network)
    opt = make_opt(network)
    model.prepare(opt, paddle.nn.MSELoss())
    model.fit(dataset(), batch_size=8, epochs=epochs, shuffle=False, verbose=0)
    return model, network, opt


def sched():
    return paddle.optimizer.lr.StepDecay(0.01, step_size=2, gamma=0.5)


def params(network):
    return [p.numpy() for p in network.parameters()]


def test_hapi_fit_with_a_paddle_scheduler_is_bit_exact_and_steps_it():
    _, ours, opt = hapi(lambda n: ae.Adamax(learning_rate=sched(), parameters=n.parameters()),
                        epochs=2)
    _, theirs, ref = hapi(lambda n: paddle.optimizer.Adamax(learning_rate=sched(),
                                                            parameters=n.parameters()), epochs=2)
    for a, b in zip(params(ours), params(theirs)):
        np.testing.assert_array_equal(a, b)
    assert opt.get_lr() == ref.get_lr() == 0.01 * 0.5 ** 4  # 8 steps, halved every 2


def test_hapi_save_then_load_resumes_bit_identically(tmp_path):
    make = lambda n: ae.Adamax(learning_rate=sched(), parameters=n.parameters())  # noqa: E731
    _, full, _ = hapi(make, epochs=2)
    first, _, opt = hapi(make, epochs=1)
    first.save(str(tmp_path / "ckpt"))
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pdopt", "ckpt.pdparams"]
    network = net()
    model = paddle.Model(network)
    opt2 = make(network)
    model.prepare(opt2, paddle.nn.MSELoss())
    model.load(str(tmp_path / "ckpt"))  # paddle Tensors and hapi's extra accumulator keys
    for key, value in opt.state_dict().items():
        if key != "LR_Scheduler":
            np.testing.assert_array_equal(opt2.state_dict()[key], value, err_msg=key)
    assert opt2.state_dict()["LR_Scheduler"] == opt.state_dict()["LR_Scheduler"]
    model.fit(dataset(), batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(params(network), params(full)):
        np.testing.assert_array_equal(a, b)


def _steps(network, opt, n=3):
    rng = np.random.default_rng(5)
    for _ in range(n):
        x = paddle.to_tensor(rng.standard_normal((8, 4)).astype("float32"))
        network(x).square().mean().backward()
        opt.step()
        opt.clear_grad()


def _copy(src, dst):
    for a, b in zip(src.parameters(), dst.parameters()):
        b.set_value(a.numpy())


@pytest.mark.parametrize("direction", ["paddle->ours", "ours->paddle"])
def test_state_dicts_cross_paddle_optimizer_adamax(direction):
    with paddle.utils.unique_name.guard():  # paddle's accumulator names: ..._moment_0
        _, first, opt = hapi(lambda n: (ae.Adamax if direction == "ours->paddle" else
                                        paddle.optimizer.Adamax)(0.01, parameters=n.parameters()))
        second = net()
        _copy(first, second)
        make = paddle.optimizer.Adamax if direction == "ours->paddle" else ae.Adamax
        opt2 = make(0.01, parameters=second.parameters())
        opt2.set_state_dict(opt.state_dict())  # numpy arrays / paddle Tensors as values
        _steps(second, opt2)  # first: paddle reads a state dict's (live) values lazily
        _steps(first, opt)
    for a, b in zip(params(first), params(second)):
        np.testing.assert_array_equal(a, b)


def test_paddle_keys_numbered_by_its_process_counter_load():
    _, network, theirs = hapi(lambda n: paddle.optimizer.Adamax(0.01, parameters=n.parameters()))
    sd = {k.rsplit("_", 1)[0] + "_7": v for k, v in theirs.state_dict().items()}  # 8th optimizer
    ours = ae.Adamax(0.01, parameters=net().parameters())
    ours.set_state_dict(sd)
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(value, sd[key.rsplit("_", 1)[0] + "_7"].numpy())


def test_a_misnamed_key_is_still_refused():
    opt = ae.Adamax(0.01, parameters=net().parameters())
    bad = {"linear_9.w_0_moment_0": np.zeros((4, 8), np.float32)}
    with pytest.raises(ValueError, match=r"state_dict\['linear_9.w_0_moment_0'\]: no parameter"):
        opt.set_state_dict(bad)


@pytest.fixture
def forced_scaler(monkeypatch):
    """paddle.amp.GradScaler switches itself off on a CPU; on a GPU it is on. Its own code,
    made to believe it is on a GPU (static scaling: dynamic scaling is for float16 autocast)."""
    import paddle.amp.grad_scaler as gs

    class GpuPlace:
        def is_gpu_place(self):
            return True

    class Tracer:
        _expected_place = GpuPlace()
    monkeypatch.setattr(gs, "_dygraph_tracer", lambda: Tracer())

    def make():
        scaler = paddle.amp.GradScaler(init_loss_scaling=1024.0, use_dynamic_loss_scaling=False)
        assert scaler.is_enable()
        return scaler
    return make


@pytest.mark.parametrize("how", ["minimize", "step"])
def test_grad_scaler_unscales_and_skips_inf_steps(forced_scaler, how):
    def run(make_opt):
        network = net()
        opt = make_opt(network)
        scaler = forced_scaler()
        rng = np.random.default_rng(3)
        skipped = 0
        for step in range(6):
            xb = paddle.to_tensor(rng.standard_normal((8, 4)).astype("float32"))
            loss = paddle.nn.functional.mse_loss(network(xb), paddle.zeros([8, 2]))
            if step == 2:
                loss = loss * float("inf")
            scaled = scaler.scale(loss)
            scaled.backward()
            if how == "minimize":
                scaler.minimize(opt, scaled)
            else:
                scaler.step(opt)
                scaler.update()
            skipped += bool(scaler._found_inf)
            opt.clear_grad()
        return network, opt, skipped
    ours, opt, s1 = run(lambda n: ae.Adamax(0.01, parameters=n.parameters()))
    theirs, ref, s2 = run(lambda n: paddle.optimizer.Adamax(0.01, parameters=n.parameters()))
    assert s1 == s2 == 1
    for a, b in zip(params(ours), params(theirs)):
        np.testing.assert_array_equal(a, b)
    # the skipped step still advanced beta1_pow, as paddle's found_inf step does: beta1 ** 7
    theirs_pow = next(v for k, v in ref.state_dict().items()
                      if k.startswith("linear_0.w_0_beta1_pow_acc_"))
    np.testing.assert_array_equal(opt.state_dict()["linear_0.w_0_beta1_pow_acc_0"],
                                  theirs_pow.numpy())
    assert opt.state_dict()["linear_0.w_0_beta1_pow_acc_0"][0] == pytest.approx(0.9 ** 7, rel=1e-6)


def test_grad_scaler_sees_the_parameter_groups(forced_scaler):
    network = net()
    layers = list(network.parameters())
    opt = ae.Adamax(0.01, parameters=[{"params": layers[:2]},
                                      {"params": layers[2:], "learning_rate": 0.5}])
    assert [len(g["params"]) for g in opt._param_groups] == [2, 2]
    assert opt._parameter_list == layers and opt._name is None
    scaler = forced_scaler()
    loss = network(paddle.ones([2, 4])).sum()
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    np.testing.assert_allclose(layers[3].grad.numpy(), [2.0, 2.0])  # 1024 * 2 / 1024


def test_an_unstepped_ae_lr_scheduler_is_reported_once():
    network = net()
    s = ae.lr.StepDecay(0.01, step_size=1)
    opt = ae.Adamax(learning_rate=s, parameters=network.parameters())
    x = paddle.ones([2, 4])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(120):
            loss = network(x).sum()
            loss.backward()
            opt.minimize(loss)
            opt.clear_grad()
    ours = [w for w in caught if "has not been stepped" in str(w.message)]
    assert len(ours) == 1
    assert "StepDecay has not been stepped in 100 minimize() calls" in str(ours[0].message)
    assert "paddle.optimizer.lr scheduler" in str(ours[0].message)


def test_a_stepped_ae_lr_scheduler_is_not_reported():
    network = net()
    s = ae.lr.StepDecay(0.01, step_size=1000)
    opt = ae.Adamax(learning_rate=s, parameters=network.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(120):
            loss = network(paddle.ones([2, 4])).sum()
            loss.backward()
            opt.minimize(loss)
            opt.clear_grad()
            s.step()


def test_reduce_on_plateau_takes_paddle_tensors():
    ours, theirs = ae.lr.ReduceOnPlateau(1.0, patience=0), \
        paddle.optimizer.lr.ReduceOnPlateau(1.0, patience=0)
    for value in (1.0, 1.0, 0.5, 0.7, 0.7):
        ours.step(paddle.to_tensor(value))
        theirs.step(paddle.to_tensor(value))
        assert ours() == theirs()
    before = ours.last_epoch
    with pytest.raises(TypeError, match="metrics must be"):
        ours.step("high")
    assert ours.last_epoch == before  # a bad metric changes nothing
