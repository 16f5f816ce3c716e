"""Optimizer.minimize example (paddle docs), with Adamax: backward first, minimize steps."""
from _compare import main


def example(paddle, Adamax):
    linear = paddle.nn.Linear(10, 10)
    inp = paddle.uniform(shape=[10, 10], min=-0.1, max=0.1)
    out = linear(inp)
    loss = paddle.mean(out)
    adamax = Adamax(learning_rate=0.1, parameters=linear.parameters(), weight_decay=0.01)
    loss.backward()
    ops, params_grads = adamax.minimize(loss)
    adamax.clear_grad()
    return [len(ops), len(params_grads)] + [p.numpy() for p in linear.parameters()]


if __name__ == "__main__":
    main(example)
