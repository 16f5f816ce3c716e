"""paddle's hapi: Model.prepare(optimizer=adamax_engine.Adamax(...)).fit, Model.save, then
Model.load into a new model and fit on: the same parameters as one uninterrupted fit, bit for
bit, with paddle's StepDecay stepped by hapi.

    python scripts/examples/fronts/paddle_hapi_save_load.py
"""
import os
import tempfile

import numpy as np
import paddle

import adamax_engine as ae


def new_model():
    with paddle.utils.unique_name.guard():  # as in a new process: the same parameter names
        paddle.seed(0)
        net = paddle.nn.Sequential(paddle.nn.Linear(4, 16), paddle.nn.Tanh(),
                                   paddle.nn.Linear(16, 1))
    model = paddle.Model(net)
    sched = paddle.optimizer.lr.StepDecay(0.02, step_size=4, gamma=0.5)
    model.prepare(ae.Adamax(learning_rate=sched, parameters=net.parameters()),
                  paddle.nn.MSELoss())
    return model, net


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-1.0], [0.5], [2.0]], "float32")).astype("float32")
    return paddle.io.TensorDataset([paddle.to_tensor(x), paddle.to_tensor(y)])


if __name__ == "__main__":
    straight, straight_net = new_model()
    straight.fit(data(), batch_size=16, epochs=4, shuffle=False, verbose=0)
    first, _ = new_model()
    first.fit(data(), batch_size=16, epochs=2, shuffle=False, verbose=0)
    folder = tempfile.mkdtemp()
    first.save(os.path.join(folder, "ckpt"))          # ckpt.pdparams + ckpt.pdopt
    second, second_net = new_model()
    second.load(os.path.join(folder, "ckpt"))         # optimizer state and scheduler back
    second.fit(data(), batch_size=16, epochs=2, shuffle=False, verbose=0)
    same = all(np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(straight_net.parameters(), second_net.parameters()))
    print(f"saved to {folder}; resumed run equals the uninterrupted one: {same}")
    assert same
    print("OK: hapi save/load round-trips adamax_engine.Adamax")
