"""paddle.optimizer.Adamax's own examples: beta1/beta2 as tensors + weight decay; two groups.

paddle 3.3.1 cannot run its own first example: ``beta1=paddle.to_tensor([0.9])`` fails in
``_add_moments_pows`` (float() of a [1]-shaped Tensor). The engine accepts one-element tensors,
as the docs intend; paddle runs here with the same values as floats, which must give the same
numbers.
"""
from _compare import main


def example(paddle, Adamax):
    inp = paddle.uniform([10, 10], dtype="float32", min=-0.1, max=0.1)
    linear = paddle.nn.Linear(10, 10)
    inp = paddle.to_tensor(inp)
    out = linear(inp)
    beta1 = paddle.to_tensor([0.9], dtype="float32")
    beta2 = paddle.to_tensor([0.99], dtype="float32")
    if Adamax is paddle.optimizer.Adamax:  # paddle's bug, see the module docstring
        beta1, beta2 = 0.9, 0.99
    adamax = Adamax(learning_rate=0.1, parameters=linear.parameters(), beta1=beta1, beta2=beta2,
                    weight_decay=0.01)
    out.backward()
    adamax.step()
    adamax.clear_grad()
    results = [p.numpy() for p in linear.parameters()]

    # Note that the learning_rate of linear_2 is 0.01.
    linear_1 = paddle.nn.Linear(10, 10)
    linear_2 = paddle.nn.Linear(10, 10)
    inp = paddle.uniform(shape=[10, 10], min=-0.1, max=0.1)
    out = linear_1(inp)
    out = linear_2(out)
    adamax = Adamax(learning_rate=0.1,
                    parameters=[{"params": linear_1.parameters()},
                                {"params": linear_2.parameters(), "weight_decay": 0.001,
                                 "learning_rate": 0.1, "beta1": 0.8}],
                    weight_decay=0.01, beta1=0.9)
    out.backward()
    adamax.step()
    adamax.clear_grad()
    return results + [p.numpy() for p in linear_1.parameters() + linear_2.parameters()]


if __name__ == "__main__":
    main(example)
