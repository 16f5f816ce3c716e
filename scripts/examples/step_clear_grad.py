"""Optimizer.step / Optimizer.clear_grad examples (paddle docs), with Adamax."""
from _compare import main


def example(paddle, Adamax):
    a = paddle.arange(26, dtype="float32").reshape([2, 13])
    linear = paddle.nn.Linear(13, 5)
    adamax = Adamax(learning_rate=0.01, parameters=linear.parameters())
    out = linear(a)
    out.backward()
    adamax.step()
    adamax.clear_grad()
    return [p.numpy() for p in linear.parameters()] + [p.grad.numpy() for p in linear.parameters()]


if __name__ == "__main__":
    main(example)
