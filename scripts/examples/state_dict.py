"""Optimizer.state_dict / set_state_dict (paddle docs' example, with Adamax and NoamDecay):
the same accumulators in the same order; loading them back (into the same optimizer, as the
docs do: paddle cannot load them into a second one in the same process, see the README) and
stepping on gives the same numbers."""
import numpy as np
from _compare import main


def example(paddle, Adamax):
    emb = paddle.nn.Embedding(10, 10)
    scheduler = paddle.optimizer.lr.NoamDecay(d_model=100, warmup_steps=100)
    adamax = Adamax(learning_rate=scheduler, parameters=emb.parameters())
    for _ in range(3):
        emb(paddle.randint(low=0, high=10, shape=[4])).sum().backward()
        adamax.step()
        adamax.clear_grad()
        scheduler.step()
    state = adamax.state_dict()
    values = [v if isinstance(v, dict) else np.array(v.numpy() if hasattr(v, "numpy") else v)
              for v in state.values()]
    adamax.set_state_dict(state)
    emb(paddle.randint(low=0, high=10, shape=[4])).sum().backward()
    adamax.step()
    return [str(values[-1])] + values[:-1] + [p.numpy() for p in emb.parameters()]


if __name__ == "__main__":
    main(example)
