"""Optimizer.get_lr examples (paddle docs, dygraph part), with Adamax: a float lr, then
StepDecay(0.5, step_size=2, gamma=0.1) -> 0.5, 0.5, 0.05, 0.05, 0.005... (spec section 7)."""
from _compare import main


def example(paddle, Adamax):
    emb = paddle.nn.Embedding(10, 3)
    lines = []
    adamax = Adamax(0.01, parameters=emb.parameters())
    for batch in range(10):
        out = emb(paddle.randint(low=0, high=5, shape=[5]))
        out.backward()
        lines.append("Learning rate of step{}: {}".format(batch, adamax.get_lr()))
        adamax.step()
    scheduler = paddle.optimizer.lr.StepDecay(learning_rate=0.5, step_size=2, gamma=0.1)
    adamax = Adamax(scheduler, parameters=emb.parameters())
    for batch in range(10):
        out = emb(paddle.randint(low=0, high=5, shape=[5]))
        out.backward()
        lines.append("Learning rate of step{}: {}".format(batch, adamax.get_lr()))
        adamax.step()
        scheduler.step()
    return lines + [p.numpy() for p in emb.parameters()]


if __name__ == "__main__":
    main(example)
